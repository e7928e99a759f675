"""Change-point detection: idf_jax.eil.pelt against ruptures' Pelt, side by side.

Synthetic piecewise-constant signals with known change points (Gaussian noise, sigma=1,
segment lengths ~ 50..400, level jumps ~ N(0, 3^2)), and statsmodels' Nile flow
(1871-1970; the known shift after the Aswan works, the first low year 1899: breakpoint
index 28). Both methods get the same cost ('l2'), the same penalty
(idf_jax.eil.regime.default_penalty: 3 sigma^2 log n, sigma from first differences) and
min_size=5. ruptures runs exactly (jump=1) where that finishes in reasonable time and
with its default jump=5 everywhere. F1 counts a detected change as a hit if it lies
within `margin` samples of an unmatched true change (ruptures.metrics.precision_recall).

Second part: families the default cost must handle (mean shifts, variance shifts, AR(1)
series with level shifts, AR(1) noise without change, a normal simulator week): idf's default
(cost 'ar1', penalty 'mbic' with the heavy-tail correction) and its 'normal' / 'l2' costs
against ruptures' Pelt with its 'l2', 'normal' and 'ar' (order 1) costs, each given the
matching mBIC-type penalty in its own units (l2 and ar: 3 sigma^2 log n and 4 sigma^2 log n,
sigma the robust noise scale; normal: 4 log n), min_size 8, jump 5.

Run: PYTHONPATH=. python experiments/regimes.py   -> experiments/results/regimes.md
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np

from idf_jax.eil.regime import default_penalty, pelt, robust_sigma

warnings.filterwarnings("ignore")
import ruptures as rpt  # noqa: E402
from ruptures.metrics import precision_recall  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results", "regimes.md")
MARGIN = 5


def synthetic(rng, n):
    cps, t = [], 0
    while True:
        t += int(rng.integers(50, 400))
        if t >= n - 50:
            break
        cps.append(t)
    y = np.empty(n)
    level = 0.0
    for a, b in zip([0] + cps, cps + [n]):
        level += rng.normal(0, 3)
        y[a:b] = level
    return y + rng.normal(size=n), cps + [n]


def f1(true, pred, margin):
    if len(true) == 1 and len(pred) == 1:
        return 1.0
    if len(pred) == 1 or len(true) == 1:
        return 0.0
    p, r = precision_recall(true, pred, margin=margin)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_case(y, true, margin, exact_ok):
    pen = default_penalty(y, "l2")
    ours, t_ours = timed(lambda: pelt(y, pen, min_size=5, cost="l2"))
    r5, t_r5 = timed(lambda: rpt.Pelt(model="l2", min_size=5, jump=5).fit(y).predict(pen=pen))
    row = dict(
        f1_ours=f1(true, ours, margin),
        t_ours=t_ours,
        f1_r5=f1(true, r5, margin),
        t_r5=t_r5,
        n_true=len(true) - 1,
        n_ours=len(ours) - 1,
    )
    if exact_ok:
        r1, t_r1 = timed(lambda: rpt.Pelt(model="l2", min_size=5, jump=1).fit(y).predict(pen=pen))
        row.update(f1_r1=f1(true, r1, margin), t_r1=t_r1, same=(r1 == ours))
    return row, ours


def family(rng, kind, n=1200):
    """One series of a family and its true change points (ruptures' convention)."""
    cps, t = [], 0
    while True:
        t += int(rng.integers(150, 400))
        if t >= n - 100:
            break
        cps.append(t)
    bounds = list(zip([0] + cps, cps + [n]))
    y = np.empty(n)
    if kind == "mean":
        level = 0.0
        for a, b in bounds:
            level += rng.choice([-1, 1]) * rng.uniform(1.0, 3.0)
            y[a:b] = level + rng.normal(size=b - a)
    elif kind == "variance":
        scale = 1.0
        for a, b in bounds:
            scale *= rng.choice([0.4, 2.5])
            y[a:b] = scale * rng.normal(size=b - a)
    elif kind in ("ar-shift", "ar-noise"):
        e = rng.normal(size=n)
        z = np.zeros(n)
        for i in range(1, n):
            z[i] = 0.8 * z[i - 1] + e[i]
        if kind == "ar-noise":
            return z, [n]
        level = 0.0
        for a, b in bounds:
            level += rng.choice([-1, 1]) * rng.uniform(2.0, 4.0)
            y[a:b] = level + z[a:b]
    return y, cps + [n]


def families_section(rng, trials=4):
    import math

    methods = {
        "idf ar1 (default)": lambda y: pelt(y, cost="ar1", min_size=8),
        "idf normal": lambda y: pelt(y, cost="normal", min_size=8),
        "idf l2": lambda y: pelt(y, cost="l2", min_size=8),
        "ruptures l2": lambda y: (
            rpt.Pelt(model="l2", min_size=8, jump=5).fit(y).predict(pen=default_penalty(y, "l2"))
        ),
        "ruptures normal": lambda y: (
            rpt.Pelt(model="normal", min_size=8, jump=5).fit(y).predict(pen=4 * math.log(len(y)))
        ),
        "ruptures ar(1)": lambda y: (
            rpt.Pelt(model="ar", params={"order": 1}, min_size=8, jump=5)
            .fit(y)
            .predict(pen=4 * robust_sigma(y) ** 2 * math.log(len(y)))
        ),
    }
    kinds = ("mean", "variance", "ar-shift", "ar-noise")
    lines = [
        "",
        "## Families: mean, variance, AR(1) with level shifts, AR(1) noise",
        "",
        f"{trials} series of n = 1200 per family (segments 150-400); F1 with margin {MARGIN}; "
        "for AR(1) noise (no change) the column is the mean number of change points found.",
        "",
        "| method | " + " | ".join(kinds) + " | time per series (s) |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    data = {k: [family(rng, k) for _ in range(trials)] for k in kinds}
    for name, fn in methods.items():
        cells, t_all = [], 0.0
        for k in kinds:
            vals = []
            for y, true in data[k]:
                out, dt = timed(lambda y=y: fn(y))
                t_all += dt
                vals.append(len(out) - 1 if k == "ar-noise" else f1(true, out, MARGIN))
            cells.append(f"{np.mean(vals):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {t_all / (trials * 4):.3f} |")
        print(lines[-1], flush=True)
    import jax

    from idf_jax.eil.regime import detect_regime_shift
    from idf_jax.nvp import simulator as sim

    counts = []
    for day, seed in ((7, 1), (100, 2), (190, 3), (300, 4)):
        obs = sim.simulate(sim.make_params(start_hour=24.0 * day), jax.random.key(seed), 672)
        e = np.asarray(obs["power"], np.float64) * 900.0
        counts.append(
            (
                day,
                detect_regime_shift(e)["num_regimes"],
                detect_regime_shift(e, cost="l2", min_size=5)["num_regimes"],
            )
        )
    lines += [
        "",
        "Regimes found by `detect_regime_shift` in one normal simulator week (672 steps of "
        "facility energy, row preset, TMY weather, no events) — default ('ar1') vs the previous "
        "default ('l2', min_size 5): " + "; ".join(f"day {d}: {a} vs {b}" for d, a, b in counts),
    ]
    return lines


def main():
    rng = np.random.default_rng(0)
    pelt(np.r_[np.zeros(20), np.ones(20)])  # warm nothing (pure numpy); keeps timings fair
    lines = [
        "# Change-point detection: idf_jax.eil.pelt vs ruptures.Pelt",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
        "(timings are wall-clock on a loaded machine; compare ratios within a row).",
        "Same cost ('l2'), penalty (3 sigma^2 log n) and min_size=5 for both; F1 margin "
        f"= {MARGIN} samples.",
        "",
        "## Synthetic piecewise-constant signals",
        "",
        "| n | trials | true cps (mean) | F1 ours | F1 ruptures jump=1 | F1 ruptures jump=5 "
        "| time ours (s) | time ruptures jump=1 (s) | time ruptures jump=5 (s) "
        "| speed-up vs jump=5 | identical to exact ruptures |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, trials, exact in [(500, 5, True), (2000, 3, True), (10000, 2, False), (50000, 1, False)]:
        rows = []
        for _ in range(trials):
            y, true = synthetic(rng, n)
            rows.append(run_case(y, true, MARGIN, exact)[0])
        mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
        ex = (
            (
                f"{mean('f1_r1'):.3f}",
                f"{mean('t_r1'):.3f}",
                "yes" if all(r["same"] for r in rows) else "no",
            )
            if exact
            else ("—", "—", "—")
        )
        lines.append(
            f"| {n} | {trials} | {mean('n_true'):.1f} | {mean('f1_ours'):.3f} | {ex[0]} | "
            f"{mean('f1_r5'):.3f} | {mean('t_ours'):.3f} | {ex[1]} | {mean('t_r5'):.3f} | "
            f"{mean('t_r5') / mean('t_ours'):.1f}x | {ex[2]} |"
        )
        print(lines[-1], flush=True)

    import statsmodels.datasets.nile as nile

    data = nile.load_pandas().data
    y = data["volume"].to_numpy(float)
    years = data["year"].to_numpy(int)
    true = [28, len(y)]  # 1871..1898 high, 1899.. low
    reps = 50
    row, ours = run_case(y, true, 3, True)
    _, t_ours = timed(lambda: [pelt(y, default_penalty(y), min_size=5) for _ in range(reps)])
    pen = default_penalty(y)
    _, t_r1 = timed(
        lambda: [
            rpt.Pelt(model="l2", min_size=5, jump=1).fit(y).predict(pen=pen) for _ in range(reps)
        ]
    )
    lines += [
        "",
        "## Nile flow (statsmodels.datasets.nile, n = 100)",
        "",
        "| method | change points (first year of new segment) | F1 (margin 3 y) "
        f"| time per call (ms, mean of {reps}) |",
        "|---|---|---|---|",
        f"| idf_jax.eil.pelt | {[int(years[b]) for b in ours[:-1]]} | {row['f1_ours']:.3f} "
        f"| {1e3 * t_ours / reps:.2f} |",
        f"| ruptures Pelt jump=1 | same: {row['same']} | {row['f1_r1']:.3f} "
        f"| {1e3 * t_r1 / reps:.2f} |",
        f"| ruptures Pelt jump=5 | — | {row['f1_r5']:.3f} | — |",
        "",
        "Known answer: the level drops after 1898 (first low year 1899).",
        "",
        "Notes: with identical cost, penalty and min_size, PELT is exact, so our result "
        "equals ruptures' exact (jump=1) segmentation wherever both ran (column 'identical')."
        " ruptures' default jump=5 only considers every 5th index, so it trades "
        "localisation (F1 at a tight margin) for speed; ours is exact and still faster. "
        "Our inner loop is vectorised numpy over the surviving candidates; its worst case "
        "(long homogeneous stretches, where PELT prunes little) is still quadratic.",
    ]
    lines += families_section(np.random.default_rng(1))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(OUT + ".tmp", OUT)
    print("\n".join(lines[-14:]))


if __name__ == "__main__":
    main()
