"""`idf evolve`: the command group is registered and reports bad input on one line."""

from idf_jax.runtime.cli import main


def test_presets_lists_the_packaged_presets(capsys):
    assert main(["evolve", "presets"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "sample_equilibrium" in out and "idf evolve equilibrium" in out


def test_unknown_record_is_a_usage_error(capsys):
    rc = main(
        [
            "evolve",
            "equilibrium",
            "--capsule",
            "molecular.lennard_jones_cluster",
            "--param",
            "n=11",
            "--budget-s",
            "1",
        ]
    )
    assert rc == 2
    assert "--target" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    assert main(["evolve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "equilibrium" in out and "sampler" in out


def test_fixed_and_tuned_option_is_a_usage_error(capsys):
    rc = main(
        [
            "evolve", "equilibrium", "--capsule", "molecular.lennard_jones_cluster",
            "--param", "n=13", "--fix", "adapt_rate=0.1", "--include", "adapt_rate",
            "--budget-s", "1",
        ]
    )  # fmt: skip
    assert rc == 2
    assert "--fix" in capsys.readouterr().err
