"""Notebook magics through IPython's InteractiveShell."""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest
from _runtime_helpers import LJ_NAME, NAME

import idf_jax as idf

IPython = pytest.importorskip("IPython")


@pytest.fixture(scope="module")
def shell():
    import matplotlib

    matplotlib.use("Agg")
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("load_ext", "idf_jax")
    yield ip
    import matplotlib.pyplot as plt

    plt.close("all")


def test_package_import_does_not_import_ipython():
    import subprocess

    code = "import sys, idf_jax; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_magics_registered(shell):
    assert shell.find_line_magic("idf_visualize") is not None
    assert shell.find_line_magic("idf_simulate") is not None


def test_visualize_trace_png_and_animation(shell, tmp_path):
    import capsules

    cap = capsules.make(NAME, dim=2)
    x0 = cap.init(jax.random.key(0), 3)
    tr = idf.sample(idf.mala(cap.energy_fn, 0.3), jax.random.key(1), x0, 40)
    shell.user_ns["tr"] = tr
    fig = shell.run_line_magic("idf_visualize", f"tr --out {tmp_path / 't.png'}")
    assert len(fig.axes) == 2
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    shell.run_line_magic("idf_visualize", f"tr --animate {tmp_path / 't.gif'} --frames 4")
    assert (tmp_path / "t.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_visualize_landscape_contour_and_3d(shell, tmp_path):
    fig = shell.run_line_magic("idf_visualize", f"{NAME} --param dim=2")
    assert fig.axes[0].get_title().startswith(NAME)
    fig = shell.run_line_magic("idf_visualize", f"{NAME} --3d --span 2")
    assert fig.axes[0].name == "3d"
    shell.user_ns["double_well"] = lambda x: (x[0] ** 2 - 1.0) ** 2 + x[1] ** 2
    fig = shell.run_line_magic("idf_visualize", "double_well")
    assert fig.axes


def test_visualize_molecule_3d_with_rotation(shell, tmp_path):
    shell.user_ns["water"] = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    fig = shell.run_line_magic("idf_visualize", f"water --animate {tmp_path / 'w.gif'} --frames 3")
    assert fig.axes[0].name == "3d"
    assert (tmp_path / "w.gif").stat().st_size > 0


def test_visualize_unknown_target_is_a_clear_error(shell):
    with pytest.raises(ValueError, match="neither a variable"):
        shell.run_line_magic("idf_visualize", "no_such_thing")


def test_simulate_dimer_relaxes_to_lj_minimum(shell, tmp_path):
    from idf_jax.runtime.notebook import read_xyz

    r0 = 1.2
    xyz = tmp_path / "dimer.xyz"
    xyz.write_text(f"2\nLJ dimer\nAr 0 0 0\nAr {r0} 0 0\n")
    out = tmp_path / "traj.xyz"
    shell.run_line_magic(
        "idf_simulate",
        f"{xyz} --capsule {LJ_NAME} --timesteps 1000 --every 10 --dt 0.005 --friction 2.0 "
        f"--temperature 0.002 --output {out}",
    )
    tr = shell.user_ns["idf_sim"]
    e = np.asarray(tr.energies)[0]
    assert e.shape == (100,)
    # Starting excess E(1.2) + 1 = 0.109 decays like exp(-friction t) with t = 5: < 1e-3 left;
    # at kT = 0.002 the potential energy fluctuates by O(kT) around the minimum E = -1.
    assert np.all(e >= -1.0 - 1e-6)
    assert np.mean(e[-20:]) < -1.0 + 5 * 0.002
    text = out.read_text().splitlines()
    assert text.count("2") == 100 and text[1].startswith("step 10 energy")
    _, last = read_xyz(str(out))  # first frame parses
    assert last.shape == (2, 3)
    with pytest.raises(ValueError, match="states shaped"):
        shell.run_line_magic("idf_simulate", f"{xyz} --capsule {NAME} --timesteps 10")
