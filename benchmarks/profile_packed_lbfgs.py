"""One iteration of the packed L-BFGS of `relax_conformers`, taken apart: the MMFF94
energy + gradient, the L-BFGS direction (two-loop recursion), one whole `_step`, and
an iteration inside the compiled `while_loop` (loop overhead = the difference), in
float32 and float64, on the packed grid of the benchmark molecules x C conformers at
the state where the float64 stage starts (after the float32 stage, cap 80).

    PYTHONPATH=$PWD python benchmarks/profile_packed_lbfgs.py [--conformers 64]
        [--seed 11] [--iterations 50] [--repeats 20] [--memory 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from rdkit import Chem

from capsules.molecular import embed_conformers, mmff_parameters
from capsules.molecular._conformers import MEMORY
from capsules.molecular._packed import (
    _direction,
    _step,
    cast_state,
    normalise,
    pack,
    packed_lbfgs,
    packed_resume,
    packed_start,
    to_packed,
)
from capsules.molecular._relax import MAX_STEP

BENCHMARK = ["O", "N", "C", "C=O", "CO", "CCO", "CC(=O)O", "NCC(=O)O", "CC(C)=O", "NC(N)=O"]


def _time(fn, *args, repeats: int) -> float:
    """Median wall seconds of fn(*args) (compiled and warmed up first)."""
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conformers", type=int, default=64)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--memory", type=int, default=MEMORY, help="L-BFGS memory")
    args = ap.parse_args(argv)
    mols = [Chem.AddHs(Chem.MolFromSmiles(s)) for s in BENCHMARK]
    params = [mmff_parameters(m) for m in mols]
    c = args.conformers
    confs = [embed_conformers(m, c, args.seed) for m in mols]
    slots = 12  # the molecule ladder's count for 10 molecules, as relax_conformers pads
    layout = pack(params, list(range(len(params))), slots, c)
    nmax = max(p.num_atoms for p in params)
    x = np.zeros((slots, c, nmax, 3))
    for m, cf in enumerate(confs):
        x[m, :, : cf.shape[1]] = cf
    budget = np.zeros((slots, c), np.int32)
    budget[: len(params)] = 80
    out: dict = {
        "load_average": os.getloadavg(),
        "memory": args.memory,
        "grid": {},
        "float32": {},
        "float64": {},
    }
    g = layout.grid
    out["grid"] = {"molecules": g.molecules, "atoms": g.atoms, "conformers": g.conformers}
    with jax.enable_x64(True):
        z0 = jnp.asarray(to_packed(layout, x), jnp.float32)
        st = jax.jit(packed_start, static_argnums=4)(g, z0, jnp.asarray(budget), 1e-3, args.memory)
        st, _ = jax.jit(packed_lbfgs)(g, st, 1e-3, MAX_STEP, 0)
        host = normalise(st)
        for dtype in (jnp.float32, jnp.float64):
            name = jnp.dtype(dtype).name
            cs = cast_state(dict(host, budget=np.full_like(host["budget"], 10**6)), dtype)
            cs = jax.jit(packed_resume)(g, cs, jnp.asarray(0.0, dtype))  # gtol 0: all run
            z = cs["z"]
            vg = jax.jit(lambda grid, z: grid.value_and_grad(z))
            direction = jax.jit(_direction, static_argnums=())
            step = jax.jit(_step)
            zero = jnp.asarray(0.0, dtype)
            ms = jnp.asarray(MAX_STEP, dtype)
            n = args.iterations

            def loop(c_, n=n):
                c_ = dict(c_, budget=c_["it"] + n)
                return packed_lbfgs(g, c_, zero, ms, 0)

            r = {
                "value_and_grad": _time(vg, g, z, repeats=args.repeats),
                "energy": _time(
                    jax.jit(lambda grid, z: grid.energies(z)), g, z, repeats=args.repeats
                ),
                "direction": _time(
                    direction,
                    g,
                    cs["g"],
                    cs["S"],
                    cs["Y"],
                    cs["rho"],
                    cs["gamma"],
                    cs["head"],
                    repeats=args.repeats,
                ),
                "step": _time(step, g, cs, zero, ms, repeats=args.repeats),
                "loop_iteration": _time(jax.jit(loop), cs, repeats=max(3, args.repeats // 5)) / n,
            }
            for k in (10, 30):
                zk = jnp.tile(z, (1, 1, k))
                r[f"value_and_grad_x{k}_columns"] = _time(
                    vg, g, zk, repeats=max(3, args.repeats // 4)
                )
            out[name] = r
            print(
                f"{name}: E+grad {1e3 * r['value_and_grad']:.2f} ms (E alone "
                f"{1e3 * r['energy']:.2f}), direction {1e3 * r['direction']:.2f}, one _step "
                f"{1e3 * r['step']:.2f}, one iteration in the while_loop "
                f"{1e3 * r['loop_iteration']:.2f} ms; E+grad on 10x / 30x the columns "
                f"{1e3 * r['value_and_grad_x10_columns']:.1f} / "
                f"{1e3 * r['value_and_grad_x30_columns']:.1f} ms "
                f"(grid {g.molecules} x {g.conformers}, {g.atoms} atoms)",
                flush=True,
            )
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
