"""The MAMS tuner's early stop against an older tuner: tuning gradients, acceptance, b2avg.

    PYTHONPATH=$PWD python benchmarks/bench_mams_stop.py --ref 08e6a78 --chains 128 \
        --draws 1000 --targets banana eight_schools_noncentered funnel --seeds 0 1 2

`idf.sample_tuned(method="mams")` per target and seed, once with the MAMS warm-up of
`idf_jax/adaptation/microcanonical.py` at git revision `--ref` and once with the working
tree's: mean tuning gradients per chain, the tuned step size, the mean acceptance of the
draws and b2avg (squared bias of E[x^2], averaged over dimensions) at the last draw.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import idf_jax as idf  # noqa: E402
from benchmarks.posteriors import b2_of_samples, get_target  # noqa: E402
from idf_jax.adaptation import microcanonical as mc  # noqa: E402

MODULE = "idf_jax/adaptation/microcanonical.py"
IMPORTS = [
    ("from .._checks", "from idf_jax._checks"),
    ("from .._custom_types", "from idf_jax._custom_types"),
    ("from ..run._scan", "from idf_jax.run._scan"),
    ("from ..samplers", "from idf_jax.samplers"),
    ("from ._common", "from idf_jax.adaptation._common"),
    ("from .window", "from idf_jax.adaptation.window"),
]


def old_warmup(ref: str):
    """The compiled MAMS warm-up of `MODULE` at revision `ref`."""
    src = subprocess.run(
        ["git", "show", f"{ref}:{MODULE}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    for a, b in IMPORTS:
        src = src.replace(a, b)
    mod = types.ModuleType("microcanonical_ref")
    exec(compile(src, f"{ref}:{MODULE}", "exec"), mod.__dict__)
    return mod._mams_jit


def one(target, key, chains: int, draws: int) -> str:
    k_init, k_run = jax.random.split(key)
    x0 = target.init(k_init, chains, jnp.float32)
    tr = idf.sample_tuned(target.energy, k_run, x0, draws, method="mams")
    st = tr.stats
    x = np.asarray(tr.positions, np.float64).reshape(chains, draws, -1)
    _, b2avg = b2_of_samples(x, target.second_moment, target.var_second_moment, per_chain=True)
    return (
        f"tune {float(np.mean(st['tuning_grad_evals'])):6.0f} "
        f"eps {float(np.mean(st['step_size'])):.3f} "
        f"acc {float(np.mean(np.asarray(st['acceptance_rate']))):.3f} "
        f"b2avg {float(np.asarray(b2avg)[-1]):.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ref", required=True, help="git revision of the older tuner")
    p.add_argument("--chains", type=int, default=128)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--targets", nargs="+", default=["banana", "eight_schools_noncentered"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a = p.parse_args(argv)
    versions = (("ref", old_warmup(a.ref)), ("new", mc._mams_jit))
    for tname in a.targets:
        target = get_target(tname)
        for seed in a.seeds:
            cells = []
            for label, fn in versions:
                mc._mams_jit = fn  # sample_tuned -> mams_adapt_run looks it up here
                cells.append(f"{label}: {one(target, jax.random.key(seed), a.chains, a.draws)}")
            print(f"{tname} seed {seed} | " + " | ".join(cells), flush=True)
    mc._mams_jit = versions[1][1]


if __name__ == "__main__":
    main()
