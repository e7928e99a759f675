"""Change-point detection: idf_jax.eil.pelt against ruptures' Pelt, side by side.

Synthetic piecewise-constant signals with known change points (Gaussian noise, sigma=1,
segment lengths ~ 50..400, level jumps ~ N(0, 3^2)), and statsmodels' Nile flow
(1871-1970; the known shift after the Aswan works, the first low year 1899: breakpoint
index 28). Both methods get the same cost ('l2'), the same penalty
(idf_jax.eil.regime.default_penalty: 3 sigma^2 log n, sigma from first differences) and
min_size=5. ruptures runs exactly (jump=1) where that finishes in reasonable time and
with its default jump=5 everywhere. F1 counts a detected change as a hit if it lies
within `margin` samples of an unmatched true change (ruptures.metrics.precision_recall).

Run: PYTHONPATH=. python experiments/regimes.py   -> experiments/results/regimes.md
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np

from idf_jax.eil.regime import default_penalty, pelt

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
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(OUT + ".tmp", OUT)
    print("\n".join(lines[-14:]))


if __name__ == "__main__":
    main()
