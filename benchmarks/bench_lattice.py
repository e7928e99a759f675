"""Checkerboard block Gibbs on the 2-D Ising model: idf_jax.block_gibbs against thrml 0.1.4.

Both libraries run the same model (periodic L x L, J = 1, h = 0) at the same temperature
from hot starts, side by side in this one process, on three workloads: one L=64 lattice,
64 lattices of L=64 (thrml batched with jax.vmap, as its docs do; idf through the chain
axis of idf.sample), and one L=256 lattice. Throughput is spin updates per nanosecond
(lattices x sweeps x L^2 / wall time), best of `--repeats` interleaved timed runs after a
compile run. The energy per spin of each run's last half of draws is checked against
Onsager's exact value: within 1 % or within 3 standard errors (finite-size corrections at
T = 3 are far below both).

    PYTHONPATH=. python benchmarks/bench_lattice.py [--sweeps 400] [--repeats 3] [--temperature 3.0]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf
from capsules import lattice


def thrml_setup(L: int, temperature: float):
    """thrml Ising program on a periodic L x L lattice with the two checkerboard colours as
    the two sequential blocks (thrml's own recipe for bipartite graphs)."""
    from thrml import Block, SpinNode
    from thrml.models import IsingEBM, IsingSamplingProgram

    nodes = [SpinNode() for _ in range(L * L)]
    edges = []
    for i in range(L):
        for j in range(L):
            edges.append((nodes[i * L + j], nodes[i * L + (j + 1) % L]))
            edges.append((nodes[i * L + j], nodes[((i + 1) % L) * L + j]))
    model = IsingEBM(
        nodes, edges, jnp.zeros(L * L), jnp.ones(len(edges)), jnp.asarray(1.0 / temperature)
    )
    colour = [(i + j) % 2 for i in range(L) for j in range(L)]
    blocks = [Block([n for n, c in zip(nodes, colour) if c == k]) for k in (0, 1)]
    program = IsingSamplingProgram(model, blocks, clamped_blocks=[])
    return model, program, blocks, Block(nodes)


def thrml_runner(L, chains, sweeps, draws, temperature):
    from thrml import SamplingSchedule, sample_states
    from thrml.models import hinton_init

    model, program, blocks, all_nodes = thrml_setup(L, temperature)
    per = sweeps // draws
    schedule = SamplingSchedule(n_warmup=per, n_samples=draws, steps_per_sample=per)

    def one(key):
        k_init, k_run = jax.random.split(key)
        init = hinton_init(k_init, model, blocks, ())
        return sample_states(k_run, program, schedule, init, [], [all_nodes])[0]  # (draws, L^2)

    if chains == 1:
        fn = jax.jit(lambda key: one(key)[None])
    else:
        fn = jax.jit(lambda key: jax.vmap(one)(jax.random.split(key, chains)))

    def run(seed):
        spins = fn(jax.random.key(seed))  # (chains, draws, L^2) bool
        return spins

    def energies(spins):
        s = jnp.where(spins, 1, -1).astype(jnp.int8).reshape(chains, draws, L, L)
        cap = lattice.ising(L)
        return np.asarray(jax.vmap(jax.vmap(cap.energy_fn))(s)) / L**2

    return run, energies, per * draws


def idf_runner(L, chains, sweeps, draws, temperature):
    cap = lattice.ising(L)
    sampler = idf.block_gibbs(cap, temperature)
    thin = sweeps // draws

    def run(seed):
        key = jax.random.key(seed)
        x0 = cap.init(jax.random.fold_in(key, 1), chains)
        return idf.sample(sampler, key, x0, thin * draws, thin=thin)

    def energies(trace):
        return np.asarray(trace.energies) / L**2

    return run, energies, thin * draws


def _mean_and_error(e):
    """Mean energy per spin of the last half of the draws and its standard error (draws
    are `sweeps / draws` = 20 sweeps apart, far beyond the correlation time at T = 3, so
    they are treated as independent). One L=64 lattice gives only 10 such draws: its
    standard error (~0.01) is itself ~1 % of the energy."""
    tail = np.asarray(e)[:, e.shape[1] // 2 :].ravel()
    return float(tail.mean()), float(tail.std(ddof=1) / np.sqrt(tail.size))


def timed(run, seed):
    t = time.perf_counter()
    out = jax.block_until_ready(run(seed))
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=400, help="sweeps per lattice per run")
    ap.add_argument("--draws", type=int, default=20, help="recorded draws per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=3.0)
    ap.add_argument("--only", default=None, help="run one workload: single, batched, large")
    args = ap.parse_args()

    import thrml

    T = args.temperature
    exact = lattice.onsager_energy(T)
    workloads = {"single": (64, 1), "batched": (64, 64), "large": (256, 1)}
    if args.only:
        workloads = {args.only: workloads[args.only]}
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; thrml {thrml.__version__}")
    print(f"T = {T}, Onsager u = {exact:.5f}; {args.sweeps} sweeps, best of {args.repeats}")
    print(
        f"{'workload':<9} {'L':>4} {'lattices':>8} {'thrml upd/ns':>13} {'idf upd/ns':>11} "
        f"{'ratio':>6} {'thrml u':>9} {'idf u':>9}"
    )
    for name, (L, chains) in workloads.items():
        sweeps = args.sweeps if L <= 64 else max(args.draws * 2, args.sweeps // 8)
        t_run, t_en, t_sweeps = thrml_runner(L, chains, sweeps, args.draws, T)
        i_run, i_en, i_sweeps = idf_runner(L, chains, sweeps, args.draws, T)
        t_out = jax.block_until_ready(t_run(0))  # compile
        i_out = jax.block_until_ready(i_run(0))
        tt, ti = [], []
        for r in range(args.repeats):  # interleaved, so both see the same machine load
            dt, t_out = timed(t_run, r + 1)
            tt.append(dt)
            dt, i_out = timed(i_run, r + 1)
            ti.append(dt)
        updates_t = chains * t_sweeps * L * L
        updates_i = chains * i_sweeps * L * L
        rate_t = updates_t / min(tt) / 1e9
        rate_i = updates_i / min(ti) / 1e9
        e_t = t_en(t_out)
        e_i = i_en(i_out)
        (u_t, se_t), (u_i, se_i) = _mean_and_error(e_t), _mean_and_error(e_i)
        ok_t = abs(u_t / exact - 1) < 0.01 or abs(u_t - exact) < 3 * se_t
        ok_i = abs(u_i / exact - 1) < 0.01 or abs(u_i - exact) < 3 * se_i
        print(
            f"{name:<9} {L:>4} {chains:>8} {rate_t:>13.4f} {rate_i:>11.4f} {rate_i / rate_t:>6.2f} "
            f"{u_t:>9.4f}{'' if ok_t else '!'} {u_i:>9.4f}{'' if ok_i else '!'}",
            flush=True,
        )
    print("('!' marks an energy more than 1 % and more than 3 standard errors from Onsager)")


if __name__ == "__main__":
    main()
