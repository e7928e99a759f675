"""idf.evolve.minimize against Optuna (TPE) and against evosax called directly, at several budgets.

Run:  PYTHONPATH=. python benchmarks/bench_evolve.py [--budgets 256,512,1024] [--tasks sampler]
          [--seeds 0,1,2] [--repeats 3]
          [--batch-size N|vmap] [--restarts off|best|random] [--choice-encoding index|onehot]

Three JAX-traceable tasks, each with the same number of fitness evaluations on every
side (idf: population x generations; Optuna: trials; evosax direct: population x
generations):

1. Rosenbrock 10-d on [-2, 2]^10 (optimum 0 at x = 1).
2. A mixed space: 4 log-reals, 2 ints, 2 choices (optimum 0, known).
3. Sampler tuning: MALA's step size on a 4-d Gaussian with scales 0.3..3, fitness
   -log10(min ESS / gradient evaluations) over 8 chains x 200 steps. idf runs it with
   `loop="python", batch_size=1`: the search's cost at these budgets is XLA compiling,
   and (a) a lax.scan over generations holding the sampler run compiles ~2x slower than
   the sampler alone, (b) a population-wide vmap of a whole `idf.sample` run compiles
   ~1.4x slower than one run, (c) CMA-ES's ask / tell cost seconds of compile per
   search inside the scan; with the Python loop they are compiled once per process
   (`--batch-size vmap` measures the vmap; `--loop scan` the scan).

For every budget (number of fitness evaluations) each side starts from a fresh fitness
closure, so nothing compiled for another budget is reused, and its wall time counts
everything a user waits for: idf's first `minimize` call (tracing and compiling the
whole search: the population in one vmap, the generations in one lax.scan) and Optuna's
whole study (jitting the fitness once, then one trial at a time, TPESampler seeded).
evosax direct: the same CMA-ES (same population, start at the box centre, std 0.25, the
same box decoding), hand-written `jax.jit(lax.scan(ask / vmap(fitness) / tell))`, cold
(compile included) and warm. idf's warm time (a second search with a new key, the
compiled search reused) is reported apart. Target: wall(idf, compile included) <= 0.5 x
wall(Optuna) at an equal or better best fitness; the crossover is the smallest budget
where it holds. Before anything is timed the process imports evosax and Optuna and runs
one throwaway 2-generation search of a 1-d sphere with the benchmark's population size
(backend start, first-call set-up of the libraries: evosax's first CMA-ES of a population
size costs ~10 s on the loaded machine, once per process), so the first side measured is
not charged for the process's start. The last two columns are the seconds JAX spent
tracing, lowering and XLA-compiling during each side's run (jax.monitoring events).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf

ev = idf.evolve


# --- tasks ------------------------------------------------------------------------------
def rosenbrock_task():
    d = 10
    space = {f"x{i}": ev.Real(-2.0, 2.0) for i in range(d)}

    def fit(p, key):
        x = jnp.stack([p[f"x{i}"] for i in range(d)])
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return "Rosenbrock 10-d", space, fit


CHOICE_ENCODING: dict[str, str] = {}  # --choice-encoding: Choice(encoding=...) for every side


def mixed_task():
    space = {
        **{f"r{i}": ev.Real(1e-3, 1e3, log=True) for i in range(4)},
        "n": ev.Int(1, 20),
        "m": ev.Int(-5, 5),
        "kind": ev.Choice(["a", "b", "c", "d"], **CHOICE_ENCODING),
        "scale": ev.Choice([0.5, 1.0, 2.0], **CHOICE_ENCODING),
    }
    opt = jnp.array([0.01, 0.1, 10.0, 100.0])

    def fit(p, key):
        r = jnp.stack([p[f"r{i}"] for i in range(4)])
        return (
            jnp.sum(jnp.log10(r / opt) ** 2)
            + 0.1 * (p["n"] - 7) ** 2
            + 0.5 * jnp.abs(p["m"] - 2)
            + 2.0 * (p["kind"] != 2)
            + 2.0 * (p["scale"] != 1.0)
        )

    return "mixed Real/Int/Choice", space, fit


def sampler_task():
    scales = jnp.array([0.3, 1.0, 2.0, 3.0])
    energy = lambda x: 0.5 * jnp.sum((x / scales) ** 2)  # noqa: E731
    x0 = jax.random.normal(jax.random.key(0), (8, 4))
    steps, burn = 200, 40
    space = {"step_size": ev.Real(1e-3, 10.0, log=True)}

    def fit(p, key):
        tr = idf.sample(idf.mala(energy, p["step_size"]), key, x0, steps, burn_in=burn)
        ess = jnp.min(ev.tuning.ess_per_chain_jax(tr.positions))
        return -jnp.log10(jnp.maximum(ess, 1e-6) / (8 * steps))

    return "MALA step size (ESS / gradient)", space, fit


# tasks whose fitness is noisy (a sampler run per evaluation): idf answers with the search
# distribution's mean there, the best point elsewhere
NOISY = {"sampler"}

# idf's minimize options per task (the rest: defaults)
IDF_OPTIONS = {"sampler": {"loop": "python", "batch_size": 1}}


# --- runners ----------------------------------------------------------------------------
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_s = [0.0]  # seconds JAX spent tracing, lowering and compiling (all sides)


def _on_event(event: str, duration_secs: float, **kwargs: str | int) -> None:
    if event in _COMPILE_EVENTS:
        _compile_s[0] += duration_secs


def _compiled(fn, *args, **kwargs):
    """(fn's result, seconds of trace + lower + XLA compile while it ran)."""
    before = _compile_s[0]
    out = fn(*args, **kwargs)
    return out, _compile_s[0] - before


HELD_OUT_KEYS = 1024


def held_out(space, fit, params, seed):
    """Fitness of `params` on each of HELD_OUT_KEYS fresh keys (not timed; the same keys
    for every side of a row, so paired differences cancel most of the noise): a side's
    "best" on a noisy fitness is the luckiest of its evaluations; this is what its
    answer is worth."""
    sp = ev.Space(space)
    p = sp.decode(sp.encode(params))
    keys = jax.random.split(jax.random.key(10_000 + seed), HELD_OUT_KEYS)
    return np.asarray(jax.jit(jax.vmap(fit, in_axes=(None, 0)))(p, keys), np.float64)


def paired(a, b):
    """(mean of a - b, its standard error) over the held-out keys."""
    d = a - b
    return float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(d.size))


def run_idf(space, fit, evals, pop, seed, noisy=False, **options):
    """(best, wall incl. compile, warm wall, evaluations, (answer, best point)) of one idf
    search; the answer is the best point, or on a noisy task (`noisy`, fixed per task in
    NOISY before anything runs) the search distribution's mean (`mean_params`), which is
    fitted to every evaluation where the best point is the luckiest one."""
    gens = max(1, evals // pop)
    kw: dict[str, Any] = dict(population_size=pop, num_generations=gens, **options)
    t0 = time.perf_counter()
    res = ev.minimize(fit, space, jax.random.key(seed), **kw)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev.minimize(fit, space, jax.random.key(seed + 100), **kw)
    warm = time.perf_counter() - t0
    answer = res.mean_params if noisy and res.mean_params is not None else res.best_params
    return res.best_fitness, cold, warm, gens * pop, (answer, res.best_params)


def run_optuna(space, fit, evals, seed):
    """(best, wall: the fitness's jit compile and the whole study, best params)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    f = jax.jit(fit)
    sp = ev.Space(space)
    key = jax.random.key(seed)
    f(sp.decode(sp.centre()), key).block_until_ready()

    def objective(trial):
        p = {}
        for name, d in space.items():
            if isinstance(d, ev.Real):
                p[name] = jnp.float32(trial.suggest_float(name, d.lo, d.hi, log=d.log))
            elif isinstance(d, ev.Int):
                p[name] = jnp.int32(trial.suggest_int(name, d.lo, d.hi, log=d.log))
            else:
                idx = d.options.index(trial.suggest_categorical(name, list(d.options)))
                p[name] = jnp.asarray(d.options[idx] if d.numeric else idx)
        k = jax.random.fold_in(key, trial.number)
        return float(f(p, k))

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=evals)
    wall = time.perf_counter() - t0
    return study.best_value, wall, study.best_params


def run_evosax_direct(space, fit, evals, pop, seed, std_init=0.25):
    """CMA-ES from evosax, hand-written scan over ask / vmap(fitness) / tell, on the
    same box coordinates idf searches (decoded by `ev.Space`): (best, cold, warm)."""
    from evosax.algorithms import CMA_ES

    sp = ev.Space(space)
    gens = max(1, evals // pop)
    es = CMA_ES(population_size=pop, solution=jnp.zeros(sp.dim))
    params = es.default_params.replace(std_init=std_init)

    @jax.jit
    def search(key):
        state = es.init(key, sp.centre(), params)

        def gen(state, k):
            k1, k2, k3 = jax.random.split(k, 3)
            x, state = es.ask(k1, state, params)
            f = jax.vmap(lambda z, kk: fit(sp.decode(z), kk))(x, jax.random.split(k3, pop))
            f = jnp.where(jnp.isnan(f), jnp.inf, f)
            state, _ = es.tell(k2, x, f, state, params)
            return state, jnp.min(f)

        _, fs = jax.lax.scan(gen, state, jax.random.split(key, gens))
        return jnp.min(fs)

    t0 = time.perf_counter()
    best = float(search(jax.random.key(seed)))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    float(search(jax.random.key(seed + 100)))
    warm = time.perf_counter() - t0
    return best, cold, warm


TASKS = {"rosenbrock": rosenbrock_task, "mixed": mixed_task, "sampler": sampler_task}


def main():
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--budgets", default="256,512,1024", help="fitness evaluations per side, comma-separated"
    )
    ap.add_argument("--pop", type=int, default=16, help="population size (idf and evosax)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--seeds", default=None, help="comma-separated seeds, a row per seed (default: --seed)"
    )
    ap.add_argument("--tasks", default="rosenbrock,mixed,sampler")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed runs per row (fresh closures each, sides alternating first); medians",
    )
    ap.add_argument("--no-direct", action="store_true", help="skip evosax called directly")
    ap.add_argument(
        "--batch-size",
        default=None,
        help="idf's batch_size for every task: a number, or 'vmap' (the whole population in "
        "one vmap); default: per task (IDF_OPTIONS)",
    )
    ap.add_argument(
        "--loop", choices=["scan", "python"], default=None, help="idf's loop for every task"
    )
    ap.add_argument(
        "--restarts",
        choices=["off", "best", "random"],
        default=None,
        help="idf's restarts= for every task (default: minimize's)",
    )
    ap.add_argument(
        "--choice-encoding",
        choices=["index", "onehot"],
        default=None,
        help="the mixed task's Choice encoding (default: Choice's); Optuna is unaffected",
    )
    args = ap.parse_args()
    if args.choice_encoding is not None:
        CHOICE_ENCODING["encoding"] = args.choice_encoding
    budgets = [int(b) for b in args.budgets.split(",") if b]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    import evosax.algorithms  # noqa: F401 - imports are not what is measured
    import optuna  # noqa: F401

    ev.minimize(  # process warm-up: backend start, first-call set-up (not timed)
        lambda p, k: p["x"] ** 2,
        {"x": ev.Real(-1.0, 1.0)},
        jax.random.key(0),
        population_size=args.pop,
        num_generations=2,
    )
    from jax._src import monitoring

    monitoring.register_event_duration_secs_listener(_on_event)
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, jax {jax.__version__}")
    rows = []
    for name, evals, seed in (
        (n, e, s) for n in args.tasks.split(",") for e in budgets for s in seeds
    ):
        title, space, fit = TASKS[name]()  # a fresh closure per budget and side
        options: dict[str, Any] = dict(IDF_OPTIONS.get(name, {}))
        if args.batch_size is not None:
            options["batch_size"] = None if args.batch_size == "vmap" else int(args.batch_size)
        if args.loop is not None:
            options["loop"] = args.loop
        if args.restarts is not None:
            options["restarts"] = args.restarts
        if options:
            title += " [" + ", ".join(f"{k}={v}" for k, v in options.items()) + "]"
        n = max(1, evals // args.pop) * args.pop
        times: dict[str, list[float]] = {k: [] for k in ("ci", "wi", "to", "kc_i", "kc_o")}
        bd = cd = wd = float("nan")
        for rep in range(args.repeats):
            # every repeat: fresh closures for both sides, the side that goes first
            # alternating, so a burst of load from outside hits both sides alike
            for side in ("idf", "optuna") if rep % 2 == 0 else ("optuna", "idf"):
                _, space, fit = TASKS[name]()
                if side == "idf":
                    (bi, ci, wi, n, pi), kc_i = _compiled(
                        run_idf, space, fit, evals, args.pop, seed, name in NOISY, **options
                    )
                    times["ci"].append(ci), times["wi"].append(wi), times["kc_i"].append(kc_i)
                    la_idf = os.getloadavg()[0]
                else:
                    (bo, to, po), kc_o = _compiled(run_optuna, space, fit, n, seed)
                    times["to"].append(to), times["kc_o"].append(kc_o)
        ci, wi, to, kc_i, kc_o = (statistics.median(times[k]) for k in times)
        if not args.no_direct:
            _, space, fit = TASKS[name]()
            bd, cd, wd = run_evosax_direct(space, fit, n, args.pop, seed)
        la = os.getloadavg()[0]
        la_s = f"{la_idf:.0f}/{la:.0f}"
        rows.append(
            [title, n, seed, bi, ci, wi, bo, to, bd, cd, wd, la_s, kc_i, kc_o, name, pi, po]
        )
        print(
            f"{title}: {n} evals, seed {seed} | idf best {bi:.4g} wall {ci:.2f} s incl. compile "
            f"(warm {wi:.3f} s; JAX trace+lower+compile {kc_i:.2f} s) | optuna TPE best "
            f"{bo:.4g} wall {to:.2f} s (trace+lower+compile {kc_o:.2f} s) | "
            f"idf/optuna {ci / to:.3f} | idf best <= optuna: {bi <= bo} | evosax direct "
            f"best {bd:.4g} cold {cd:.2f} s warm {wd:.3f} s | load {la:.1f}",
            flush=True,
        )
    # the answers re-evaluated after every timed run (their compiles would otherwise sit
    # in the process between timed rows)
    for row in rows:
        name, (pm, pb), po, seed = row[14], row[15], row[16], row[2]
        _, space, fit = TASKS[name]()
        hm, hb, ho = (held_out(space, fit, p, seed) for p in (pm, pb, po))
        row[14:] = [float(hm.mean()), float(ho.mean()), paired(hm, ho), paired(hb, ho)]
    print(
        "\n| task | evals | seed | idf best | idf wall s (compile incl.) | idf warm s | Optuna TPE best "
        "| Optuna wall s | idf / Optuna wall | <= 0.5x and best <= Optuna | evosax best "
        "| evosax cold s | evosax warm s | load | idf compile s | Optuna compile s "
        "| floor: Optuna compile / Optuna wall | held-out mean idf answer | held-out mean Optuna "
        "| idf answer - Optuna (SE) | idf best point - Optuna (SE) | <= 0.5x and answer not worse |"
    )
    print(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:"
        "|---:|---:|---:|---:|---|"
    )
    for row in rows:
        title, n, seed, bi, ci, wi, bo, to, bd, cd, wd, la, kc_i, kc_o = row[:14]
        hi, ho, (dm, sm), (db, sb) = row[14:]
        ok = "yes" if (ci <= 0.5 * to and bi <= bo) else "no"
        # the answer is "not worse" when its held-out mean is not above Optuna's by more
        # than two standard errors of the paired difference
        ok2 = "yes" if (ci <= 0.5 * to and dm <= 2.0 * sm) else "no"
        print(
            f"| {title} | {n} | {seed} | {bi:.4g} | {ci:.2f} | {wi:.3f} | {bo:.4g} | {to:.2f} "
            f"| {ci / to:.3f} | {ok} | {bd:.4g} | {cd:.2f} | {wd:.3f} | {la} "
            f"| {kc_i:.2f} | {kc_o:.2f} | {kc_o / to:.3f} | {hi:.4g} | {ho:.4g} "
            f"| {dm:+.4f} ({sm:.4f}) | {db:+.4f} ({sb:.4f}) | {ok2} |"
        )


if __name__ == "__main__":
    main()
