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
