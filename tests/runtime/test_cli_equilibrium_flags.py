"""`idf equilibrium --hop-loop / --local`: bad values give a clear error naming the flag;
good values reach the basin-hopping search."""

from __future__ import annotations

import json

import pytest
from _runtime_helpers import NAME

from idf_jax.runtime.cli import main


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "flags, hint",
    [
        (["--hop-loop", "sideways"], "--hop-loop"),
        (["--local", "newton"], "--local"),
        (["--hop-loop", "async", "--local", "fire"], "--hop-loop"),
        (["--method", "anneal", "--local", "lbfgs"], "--method"),
        (["--method", "anneal", "--active-chains", "2"], "--method"),
        (["--active-chains", "0"], "--active-chains"),
    ],
)
def test_bad_hop_loop_or_local_is_a_clear_error(capsys, tmp_path, flags, hint):
    rc, out, err = run(
        capsys, "equilibrium", "--capsule", NAME, "--out", str(tmp_path / "eq"), *flags
    )
    text = " ".join((out + err).split())
    assert rc != 0
    assert hint in text and "Invalid value" in text
    assert not (tmp_path / "eq" / "summary.json").exists()


def test_hop_loop_and_local_reach_the_search(capsys, tmp_path):
    out = tmp_path / "eq"
    rc, _, err = run(
        capsys,
        "equilibrium",
        "--capsule",
        NAME,
        "--param",
        "dim=3",
        "--chains",
        "4",
        "--steps",
        "200",
        "--hop-loop",
        "sync",
        "--local",
        "fire",
        "--no-plots",
        "--out",
        str(out),
    )
    assert rc == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["hop_loop"] == "sync" and s["local"] == "fire" and s["method"] == "auto"
    assert s["num_minimisations"] > 4  # basin hopping ran: more than the first minima
    assert s["best_energy"] < 1e-6  # the Gaussian's minimum E = 0 at x = 0


def test_active_chains_runs_the_chains_in_batches(capsys, tmp_path):
    """--active-chains 2 with 4 chains: two batches (batch b keyed fold_in(key, b)), so the
    search differs from --active-chains 4 (one batch, the default's layout here); every
    chain is searched and reaches the minimum either way."""
    summaries = {}
    for a in ("2", "4"):
        out = tmp_path / f"eq{a}"
        rc, _, err = run(
            capsys,
            "equilibrium",
            "--capsule",
            NAME,
            "--param",
            "dim=3",
            "--chains",
            "4",
            "--steps",
            "200",
            "--active-chains",
            a,
            "--no-plots",
            "--out",
            str(out),
        )
        assert rc == 0, err
        summaries[a] = json.loads((out / "summary.json").read_text())
    two, four = summaries["2"], summaries["4"]
    assert two["active_chains"] == 2 and len(two["energy_per_chain"]) == 4
    assert all(e < 1e-6 for e in two["energy_per_chain"] + four["energy_per_chain"])
    assert (two["energy_per_chain"], two["num_evaluations"]) != (
        four["energy_per_chain"],
        four["num_evaluations"],
    )
