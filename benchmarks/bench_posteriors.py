"""Gradient evaluations to an accurate E[x^2]: idf samplers vs BlackJAX, on posteriors with known answers.

The MAMS paper's metric (Robnik et al., arXiv 2503.01707): after each transition of every
chain, the squared bias of the running estimate of E[x_i^2], in units of Var[x_i^2]; b2_max
is its max over dimensions, b2_avg its mean. Each chain keeps its own running average and
the curve is the median over chains (the papers' convention; `--pooled` averages all chains
into one estimate instead, the many-chain view). The figure of merit is the number of
gradient evaluations per chain, tuning included, after which b2 stays below 0.01; plus the
wall time of tuning and sampling (compilation excluded, measured separately).

Every method runs in this process on the same targets, chains, starting points, key and
float type (float32; `--float64` for float64). Methods: BlackJAX NUTS (window adaptation),
BlackJAX MCLMC and adjusted MCLMC (MAMS) with their tuners, and idf's samplers (see
`posterior_methods.py`; `idf.nuts`, `idf.mclmc`, `idf.mams` and `idf.sample_tuned` are
picked up when the installed idf_jax has them).

    PYTHONPATH=$PWD python benchmarks/bench_posteriors.py               # quick: 128 chains, 3 targets
    PYTHONPATH=$PWD python benchmarks/bench_posteriors.py --full        # all targets, 128 and 1024 chains
    PYTHONPATH=$PWD python benchmarks/bench_posteriors.py --targets funnel --methods blackjax_nuts idf_hmc

Writes benchmarks/results/posteriors.json and benchmarks/results/posteriors_<target>.png
(error against gradient evaluations, log-log, every method).
"""

from __future__ import annotations

import argparse
import inspect
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import idf_jax as idf  # noqa: E402
from benchmarks.posterior_methods import (  # noqa: E402
    GRAD_FIELDS,
    Method,
    Plan,
    available_methods,
)
from benchmarks.posteriors import (  # noqa: E402
    TARGET_NAMES,
    THRESHOLD,
    Target,
    b2_of_samples,
    cost_to_threshold,
    get_target,
)
from idf_jax._io import atomic_write_json, jsonable  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
QUICK_TARGETS = ("banana", "eight_schools_noncentered", "gaussian_k100")
RECOMMENDED = "idf_sample_tuned_auto"  # what a user who does not choose gets

# Gradient evaluations per chain for sampling (after tuning), and warm-up transitions of
# the methods that take a number of steps (NUTS, MALA, HMC, idf's tuners).
BUDGET = {
    "gaussian_k100": (40_000, 100_000),
    "gaussian_k10000": (60_000, 300_000),
    "banana": (50_000, 100_000),
    "funnel": (20_000, 100_000),
    "logistic_breast_cancer": (20_000, 60_000),
    "eight_schools_noncentered": (30_000, 60_000),
    "irt_2pl": (20_000, 60_000),
}
TUNE_STEPS = (500, 1000)  # quick, full
MAX_STEPS = 40_000


# --------------------------------------------------------------------------- one run


def _sample_scan(method: Method, target: Target, num_steps: int, pooled: bool):
    """(params, states, key, truth, var) -> per-step (b2_max, b2_avg, mean cumulative grads)."""

    def run(params, states, key, truth, var):
        n = method.position(states).shape[0]
        dt = truth.dtype

        def body(carry, i):
            states, s_x2, g = carry
            keys = jax.random.split(jax.random.fold_in(key, i), n)
            states, grads = method.step(target, params, keys, states)
            x = method.position(states).astype(dt)
            s_x2 = s_x2 + x**2
            g = g + grads
            avg = s_x2 / (i + 1).astype(dt)
            if pooled:
                b2 = ((jnp.mean(avg, 0) - truth) ** 2 / var)[None]
            else:
                b2 = (avg - truth) ** 2 / var
            b2 = jnp.where(jnp.isfinite(b2), b2, jnp.inf)
            out = (jnp.median(b2.max(1)), jnp.median(b2.mean(1)), jnp.mean(g))
            return (states, s_x2, g), out

        d = truth.shape[0]
        init = (states, jnp.zeros((n, d), dt), jnp.zeros((n,), jnp.float32))
        _, outs = jax.lax.scan(body, init, jnp.arange(num_steps))
        return outs

    return run


def _block(tree):
    return jax.block_until_ready(tree)


def run_kernel_method(
    method: Method, target: Target, chains: int, key, budget: int, tune_steps: int, pooled: bool
) -> dict[str, Any]:
    """Tune, then sample until the gradient budget is spent; b2 curves and timings."""
    dt = jnp.result_type(float)
    k_init, k_tune, k_run = jax.random.split(key, 3)
    x0 = target.init(k_init, chains, dt)
    plan = Plan(tune_steps, max(budget // 4, 100))

    t0 = time.perf_counter()
    tune_c = jax.jit(lambda k, x: method.tune(target, k, x, plan)).lower(k_tune, x0).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuned = _block(tune_c(k_tune, x0))
    tune_s = time.perf_counter() - t0

    tuning_grads = float(np.mean(np.asarray(tuned.tuning_grads)))
    cost = float(np.mean(np.asarray(tuned.cost)))
    if not np.isfinite(cost) or cost <= 0:
        raise ValueError(f"tuning gave a non-finite cost per step {cost}")
    num_steps = int(min(MAX_STEPS, max(budget / cost, 50)))
    truth = jnp.asarray(target.second_moment, dt)
    var = jnp.asarray(target.var_second_moment, dt)
    run = _sample_scan(method, target, num_steps, pooled)
    t0 = time.perf_counter()
    run_c = jax.jit(run).lower(tuned.params, tuned.states, k_run, truth, var).compile()
    compile_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    b2max, b2avg, grads = _block(run_c(tuned.params, tuned.states, k_run, truth, var))
    sample_s = time.perf_counter() - t0
    return _curves_result(
        np.asarray(b2max),
        np.asarray(b2avg),
        tuning_grads + np.asarray(grads, np.float64),
        tune_s,
        sample_s,
        compile_s,
        tuning_grads,
        num_steps,
    )


def _curves_result(b2max, b2avg, grads, tune_s, sample_s, compile_s, tuning_grads, num_steps):
    g_max = cost_to_threshold(b2max, grads)
    g_avg = cost_to_threshold(b2avg, grads)
    total = tune_s + sample_s

    # Wall time to the threshold: tuning + the sampling steps needed (steps are uniform).
    def wall_to(g):
        if g is None:
            return None
        idx = int(np.searchsorted(grads, g))
        return tune_s + sample_s * (idx + 1) / len(grads)

    return dict(
        grads_to_b2max=g_max,
        grads_to_b2avg=g_avg,
        wall_to_b2max_s=wall_to(g_max),
        wall_to_b2avg_s=wall_to(g_avg),
        wall_s=total,
        tune_s=tune_s,
        sample_s=sample_s,
        compile_s=compile_s,
        tuning_grads=tuning_grads,
        num_steps=num_steps,
        total_grads=float(grads[-1]),
        final_b2max=float(b2max[-1]),
        final_b2avg=float(b2avg[-1]),
        curve=_thin_curve(grads, b2max, b2avg),
    )


def _thin_curve(grads, b2max, b2avg, points: int = 200):
    idx = np.unique(np.geomspace(1, len(grads), points).astype(int) - 1)
    return dict(grads=grads[idx].tolist(), b2max=b2max[idx].tolist(), b2avg=b2avg[idx].tolist())


# --------------------------------------------------------------------------- sample_tuned


def _stat_total(stats: dict, draws: int) -> float | None:
    for name in GRAD_FIELDS:
        if name in stats:
            return float(np.mean(np.asarray(stats[name]))) * draws
    return None


def _tuning_total(stats: dict) -> float | None:
    for name, v in stats.items():
        if "tun" in name and "grad" in name:
            return float(np.mean(np.asarray(v)))
    return None


def run_sample_tuned(
    mode: str, target: Target, chains: int, key, budget: int, pooled: bool
) -> dict[str, Any]:
    """`idf.sample_tuned(energy, key, x0, num_draws, method=mode)`, timed on a second call."""
    fn: Any = getattr(idf, "sample_tuned")  # a later idf_jax; absent names are skipped
    dt = jnp.result_type(float)
    k_init, k_run = jax.random.split(key)
    x0 = target.init(k_init, chains, dt)
    num_draws = max(budget // 8, 200)
    t0 = time.perf_counter()
    _block(fn(target.energy, k_run, x0, num_draws, method=mode))  # compiles
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace = _block(fn(target.energy, k_run, x0, num_draws, method=mode))
    wall = time.perf_counter() - t0
    stats = dict(trace.stats)
    sampling = _stat_total(stats, 1)
    tuning = _tuning_total(stats)
    if sampling is None or tuning is None:
        raise ValueError(
            f"sample_tuned's Trace.stats has no gradient count (looked for {GRAD_FIELDS} "
            f"and a '*tun*grad*' key; got {sorted(stats)})"
        )
    x = np.asarray(trace.positions, np.float64)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    b2max, b2avg = b2_of_samples(
        x, target.second_moment, target.var_second_moment, per_chain=not pooled
    )
    grads = tuning + sampling * np.arange(1, x.shape[1] + 1)
    return _curves_result(b2max, b2avg, grads, 0.0, wall, first - wall, tuning, x.shape[1])


# --------------------------------------------------------------------------- report


def _fmt(v, digits=0):
    if v is None:
        return "> budget"
    return f"{v:,.{digits}f}"


def print_table(target: str, chains: int, rows: dict[str, dict]) -> None:
    ref = rows.get("blackjax_nuts", {})
    header = [
        "method",
        "grads to b2max<0.01",
        "grads to b2avg<0.01",
        "wall s",
        "ratio max",
        "ratio avg",
        "tuning grads",
    ]
    lines = []
    for name, r in rows.items():
        if "error" in r:
            lines.append([name, "failed: " + r["error"][:60], "", "", "", "", ""])
            continue

        def ratio(k):
            a, b = r.get(k), ref.get(k)
            if a is None or "total_grads" not in ref:
                return "-"
            if b is None:  # NUTS did not get there: its whole spend is a lower bound
                return f"< {a / ref['total_grads']:.2f}"
            return f"{a / b:.2f}"

        lines.append(
            [
                name,
                _fmt(r["grads_to_b2max"]),
                _fmt(r["grads_to_b2avg"]),
                f"{r['wall_s']:.2f}",
                ratio("grads_to_b2max"),
                ratio("grads_to_b2avg"),
                _fmt(r["tuning_grads"]),
            ]
        )
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{target}, {chains} chains (ratio = grads / BlackJAX NUTS grads)")
        for h in header:
            t.add_column(h, justify="left" if h == "method" else "right")
        for line in lines:
            t.add_row(*line)
        Console(width=130).print(t)
    except ImportError:
        print(f"\n{target}, {chains} chains")
        print(" | ".join(header))
        for line in lines:
            print(" | ".join(line))


def plot(target: str, runs: dict[int, dict[str, dict]]) -> pathlib.Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = sorted({m for rows in runs.values() for m in rows})
    styles = {c: s for c, s in zip(sorted(runs), ("-", ":", "-."))}
    for ax, key, label in ((axes[0], "b2max", "b2_max"), (axes[1], "b2avg", "b2_avg")):
        for chains, rows in sorted(runs.items()):
            for j, name in enumerate(names):
                r = rows.get(name)
                if r is None or "curve" not in r:
                    continue
                c = r["curve"]
                lab = name if len(runs) == 1 else f"{name} ({chains})"
                ax.loglog(
                    c["grads"],
                    c[key],
                    styles[chains],
                    color=colors[j % len(colors)],
                    label=lab,
                    lw=1.4,
                )
        ax.axhline(THRESHOLD, color="k", lw=0.8, ls="--")
        ax.set_xlabel("gradient evaluations per chain (tuning included)")
        ax.set_title(f"{target}: {label} of E[x^2]")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("squared bias / Var[x^2]")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"posteriors_{target}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _summary_line(rows: dict[str, dict]) -> str:
    """The issue's two targets, for the best idf row (fewest grads to b2avg < 0.01)."""
    ok = {n: r for n, r in rows.items() if "error" not in r}
    idf_rows = {n: r for n, r in ok.items() if n.startswith("idf") and r["grads_to_b2avg"]}
    bj = {n: r for n, r in ok.items() if n.startswith("blackjax") and r["wall_to_b2avg_s"]}
    if not idf_rows:
        return "\nNo idf method reached b2avg < 0.01 within the budget.\n"
    best = min(idf_rows, key=lambda n: idf_rows[n]["grads_to_b2avg"])
    line = _target_line("Best idf row", best, idf_rows[best], ok, bj)
    if RECOMMENDED in idf_rows and RECOMMENDED != best:
        line += _target_line("Recommended", RECOMMENDED, idf_rows[RECOMMENDED], ok, bj)
    elif RECOMMENDED in ok and RECOMMENDED != best:
        line += f"Recommended: {RECOMMENDED} did not reach b2avg < 0.01 within the budget.\n"
    return line


def _target_line(label: str, best: str, r: dict, ok: dict, bj: dict) -> str:
    nuts = ok.get("blackjax_nuts", {})
    if nuts.get("grads_to_b2avg"):
        g = f"{r['grads_to_b2avg'] / nuts['grads_to_b2avg']:.2f}x"
    elif nuts:
        g = f"< {r['grads_to_b2avg'] / nuts['total_grads']:.2f}x"
    else:
        g = "-"
    if bj:
        fastest = min(bj, key=lambda n: bj[n]["wall_to_b2avg_s"])
        w = f"{r['wall_to_b2avg_s'] / bj[fastest]['wall_to_b2avg_s']:.2f}x {fastest}'s"
    else:
        w = "- (no BlackJAX method got there)"
    return (
        f"\n{label}: {best}, {g} BlackJAX NUTS's gradients to b2avg < 0.01 "
        f"(target <= 0.5x); wall time to it {w} (target <= 1.0x).\n"
    )


def markdown_report(results: dict) -> str:
    """The README's tables from a results JSON: one row per method, one table per run."""
    out = []
    for tname, t in results["targets"].items():
        for chains, rows in t["runs"].items():
            ref = rows.get("blackjax_nuts", {})
            out.append(
                f"\n**{tname}** (d = {t['dim']}, {chains} chains, budget {t['budget']:,} "
                "grads per chain after tuning)\n"
            )
            out.append(
                "| method | grads to b2max<0.01 | grads to b2avg<0.01 | ratio to NUTS "
                "(max / avg) | wall s (to b2avg / total) | tuning grads |"
            )
            out.append("|---|---:|---:|---:|---:|---:|")
            for name, r in rows.items():
                if "error" in r:
                    out.append(f"| {name} | failed: {r['error'][:80]} | | | | |")
                    continue
                ratios = []
                for k in ("grads_to_b2max", "grads_to_b2avg"):
                    a, b = r.get(k), ref.get(k)
                    if a is None or "total_grads" not in ref:
                        ratios.append("-")
                    elif b is None:
                        ratios.append(f"< {a / ref['total_grads']:.2f}")
                    else:
                        ratios.append(f"{a / b:.2f}")
                w = r.get("wall_to_b2avg_s")
                wall = f"{w:.1f} / {r['wall_s']:.1f}" if w is not None else f"- / {r['wall_s']:.1f}"
                out.append(
                    f"| {name} | {_fmt(r['grads_to_b2max'])} | {_fmt(r['grads_to_b2avg'])} | "
                    f"{' / '.join(ratios)} | {wall} | {_fmt(r['tuning_grads'])} |"
                )
            out.append(_summary_line(rows))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="every target, 128 and 1024 chains")
    p.add_argument("--targets", nargs="+", choices=TARGET_NAMES)
    p.add_argument("--methods", nargs="+", help="method names (default: all available)")
    p.add_argument(
        "--chains", type=int, nargs="+", help="chain counts (default 128; --full 128 1024)"
    )
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply the gradient budgets")
    p.add_argument("--pooled", action="store_true", help="one estimate pooled over chains")
    p.add_argument("--float64", action="store_true", help="run in float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="no persistent compilation cache")
    p.add_argument("--out", default=str(RESULTS / "posteriors.json"))
    p.add_argument(
        "--report", metavar="JSON", help="print Markdown tables of a results file, redraw its plots"
    )
    a = p.parse_args(argv)
    if a.report:
        import json

        results = json.loads(pathlib.Path(a.report).read_text())
        print(markdown_report(results))
        for tname, t in results["targets"].items():  # redraw the plots from the file
            plot(tname, {int(c): rows for c, rows in t["runs"].items()})
        return results
    if a.float64:
        jax.config.update("jax_enable_x64", True)
    if not a.no_cache:  # reruns skip most of the (long, on CPU) compilation
        cache = pathlib.Path.home() / ".cache" / "idf-bench-jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

    targets = a.targets or (TARGET_NAMES if a.full else QUICK_TARGETS)
    chain_counts = a.chains or ([128, 1024] if a.full else [128])
    methods = available_methods()
    tuned_modes = []
    if hasattr(idf, "sample_tuned"):
        params = inspect.signature(getattr(idf, "sample_tuned")).parameters
        if "method" in params:
            tuned_modes = ["auto", "nuts", "mams", "mclmc"]
    chosen = a.methods or [*methods, *(f"idf_sample_tuned_{m}" for m in tuned_modes)]
    unknown = [m for m in chosen if m not in methods and not m.startswith("idf_sample_tuned_")]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; available: {sorted(methods)}")
    full = 1 if a.full else 0

    results: dict[str, Any] = dict(
        meta=dict(
            jax=jax.__version__,
            backend=jax.default_backend(),
            float64=bool(a.float64),
            devices=str(jax.devices()),
            pooled=a.pooled,
            threshold=THRESHOLD,
            command=" ".join(
                ["bench_posteriors.py", *(argv if argv is not None else sys.argv[1:])]
            ),
        ),
        targets={},
    )
    for tname in targets:
        target = get_target(tname)
        budget = int(BUDGET[tname][full] * a.budget_scale)
        runs: dict[int, dict[str, dict]] = {}
        for chains in chain_counts:
            rows: dict[str, dict] = {}
            key = jax.random.key(a.seed)
            for name in chosen:
                try:
                    if name.startswith("idf_sample_tuned_"):
                        mode = name.removeprefix("idf_sample_tuned_")
                        rows[name] = run_sample_tuned(mode, target, chains, key, budget, a.pooled)
                    else:
                        rows[name] = run_kernel_method(
                            methods[name], target, chains, key, budget, TUNE_STEPS[full], a.pooled
                        )
                except Exception as e:  # one failing method must not hide the others
                    rows[name] = dict(error=f"{type(e).__name__}: {e}")
                print(
                    f"  {tname} {chains} {name}: "
                    + (
                        rows[name].get("error")
                        or f"{_fmt(rows[name]['grads_to_b2max'])} / {_fmt(rows[name]['grads_to_b2avg'])} "
                        f"grads, {rows[name]['wall_s']:.2f} s"
                    ),
                    flush=True,
                )
            print_table(tname, chains, rows)
            runs[chains] = rows
        results["targets"][tname] = {
            "source": target.source,
            "dim": target.dim,
            "exact": target.exact,
            "budget": budget,
            "runs": {str(c): r for c, r in runs.items()},
        }
        atomic_write_json(a.out, jsonable(results))
        try:
            plot(tname, runs)
        except Exception as e:  # a plotting problem must not lose the numbers
            print(f"  plot of {tname} failed: {type(e).__name__}: {e}")
    return results


if __name__ == "__main__":
    main()
