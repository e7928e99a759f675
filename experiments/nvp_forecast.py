"""NVP multi-horizon forecasts (1, 4, 24 steps) on held-out time, against five baselines.

    PYTHONPATH=. nice -n 5 python experiments/nvp_forecast.py --dataset sim
    PYTHONPATH=. nice -n 5 python experiments/nvp_forecast.py --dataset 723170TYA.CSV
    PYTHONPATH=. nice -n 5 python experiments/nvp_forecast.py --dataset 703165TY.csv
    PYTHONPATH=. nice -n 5 python experiments/nvp_forecast.py --dataset 12839.tm2
    PYTHONPATH=. python experiments/nvp_forecast.py --report     # writes results/nvp.md

Each `--dataset` run writes `experiments/results/nvp_forecast_<name>.json`; `--report`
assembles the tables of all of them into `experiments/results/nvp.md`.

Data sets
  * sim: one year of the datacenter simulator's row preset (`simulator.make_params`, 4 racks,
    15-minute steps, TMY3 outside air of Greensboro NC), 9 channels; 24 steps = 6 h.
  * every TMY file pvlib ships (`weather.TMY_FILES`: TMY3 Greensboro NC, TMY3 Sand Point AK,
    TMY2 Miami FL): dry-bulb temperature (deg C) and GHI (W/m^2), hourly; 24 steps = 1 day.
Split in time: in every month days 1-21 train, 22-24 validation, 25-end test. A forecast origin
o belongs to a split when o + 1 .. o + 24 all lie in it (training origins also need their
input window inside the training days); nothing is fitted or tuned on test origins.
Forecasters, each a Gaussian predictive N(mean_h, sd_h^2) per horizon h:
  * NVP: the one-step model (`idf_jax.nvp`, linear AR path + correction MLP + causal
    transformer heads + conservation layer), trained on one-step windows of the training days
    only (short budget: see `TRAIN`), rolled out *iteratively* (each mean fed back,
    `backtest.rollouts`). sd_h: the model's own one-step sd at step h times a per-horizon,
    per-channel factor chosen so that the 90 % interval covers 90 % of the *validation*
    origins (as `train.calibrate` does for h = 1); the uncalibrated coverage is reported too.
  * ablation (not a baseline): the same trained model with the transformer's mean head zeroed.
  * direct head (not a baseline): every horizon from one pass of the trained, frozen NVP
    (`idf_jax.nvp.direct`: a ridge readout per horizon of the window, the transformer's last
    stream and the target's time of day, strength chosen on validation); sd_h: RMS
    validation error.
  * baselines (`idf_jax.nvp.baselines`): persistence, seasonal naive (1 day), direct ridge AR
    with time-of-day features (same lag window as the NVP; strength per horizon chosen on
    validation), ETS(A, Ad, A) (statsmodels-fitted on the first 14 training days, then run
    online with fixed parameters). sd_h: RMS validation error at horizon h.
Metrics per horizon (`idf_jax.nvp.metrics`): MASE (scale: in-sample one-step naive MAE over
the training targets, one scale for all horizons), skill against persistence
1 - MASE / MASE_persistence, Gaussian CRPS (reported divided by the channel's std), coverage of
the central 90 % interval (target 0.87-0.93).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from idf_jax.nvp import conservation, simulator
from idf_jax.nvp import metrics as M
from idf_jax.nvp.backtest import rollouts
from idf_jax.nvp.baselines import (
    HoltWinters,
    Persistence,
    RidgeAR,
    SeasonalNaive,
    calibrate,
)
from idf_jax.nvp.direct import fit_direct_head, window_features
from idf_jax.nvp.loss import make_physics
from idf_jax.nvp.model import NVPConfig, fit_normalizer, forecast
from idf_jax.nvp.train import TrainConfig, train_windows
from idf_jax.nvp.weather import TMY_FILES, load_tmy3

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
HORIZONS = (1, 4, 24)
MODEL_KW = dict(d_model=32, num_layers=2, lin_head=64)
TRAIN = dict(
    epochs=4,
    batch_size=64,
    learning_rate=3e-3,
    patience=2,
    seed=0,
    max_epoch_windows=2048,
    lin_head_steps=1000,
)
Z90 = M.z_of_level(0.9)
NVP, ABL = "NVP", "NVP w/o transformer mean head (ablation)"
DIRECT = "NVP direct head (h = 1..24 in one pass)"
DIRECT_MAX_TRAIN = 20000  # training origins of the direct head's ridge fit (subsampled)


def month_labels(num_steps: int, steps_per_day: int) -> np.ndarray:
    """0 train (days 1-21 of each 30.4-day month), 1 validation (22-24), 2 test (25-end)."""
    day = np.arange(num_steps) // steps_per_day
    month_len = 365.0 / 12.0
    dom = np.floor(day - np.floor(day / month_len) * month_len).astype(int)
    return np.where(dom < 21, 0, np.where(dom < 24, 1, 2))


def _all_in(labels: np.ndarray, lab: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """True where labels[lo .. hi] (inclusive) all equal `lab`."""
    bad = np.concatenate([[0], np.cumsum(labels != lab)])
    return (bad[hi + 1] - bad[lo]) == 0


def split_origins(labels: np.ndarray, window: int, hmax: int):
    """Forecast origins per split (module doc): train (inputs and targets in training days),
    validation and test (targets o+1 .. o+hmax inside the split)."""
    t = np.arange(window, len(labels) - hmax)
    tr = t[_all_in(labels, 0, t - window + 1, t + hmax)]
    va = t[_all_in(labels, 1, t + 1, t + hmax)]
    te = t[_all_in(labels, 2, t + 1, t + hmax)]
    return tr, va, te


def one_step_targets(labels: np.ndarray, window: int):
    """Target indices of one-step training / validation windows (inputs inside the split's
    days or earlier non-test days; no test value is ever an input or a target)."""
    t = np.arange(window, len(labels))
    clean = _all_in(labels, 0, t - window, t)
    not_test = ~np.isin(labels, [2])
    nt = np.concatenate([[0], np.cumsum(~not_test)])
    no_test_inputs = (nt[t + 1] - nt[t - window]) == 0
    return t[clean], t[(labels[t] == 1) & no_test_inputs]


def windows_at(x, idx, window):
    j = idx[:, None] + np.arange(-window, 0)[None, :]
    return x[j], np.ones(j.shape, bool), x[idx]


def train_nvp(x, labels, channels, spec, window):
    cfg = NVPConfig(channels=tuple(channels), window=window, min_history=2, **MODEL_KW)
    tcfg = TrainConfig(**TRAIN)
    t_tr, t_va = one_step_targets(labels, window)
    bal = make_physics(spec, cfg.channels).balance
    runs = np.split(t_tr, np.flatnonzero(np.diff(t_tr) > 1) + 1)
    norm = fit_normalizer([x[r[0] - 1 : r[-1] + 1] for r in runs if len(r) > 1], bal)
    res = train_windows(
        windows_at(x, t_tr, window),
        windows_at(x, t_va, window),
        norm,
        cfg,
        spec,
        tcfg,
        progress=False,
    )
    return res, len(t_tr), len(t_va)


def nvp_fn(res, spec):
    phys = make_physics(spec, res.config.channels)

    def one(y, m):
        fc = forecast(res.model, phys.balance, res.normalizer, phys.util_idx, y, m)
        return jnp.stack([fc.mean, fc.var])

    return one


def score(x, origins, mean, sd, scale, persistence_mase=None):
    """Per-horizon metrics (lists over channels) of (N, H, C) Gaussian forecasts."""
    out = {}
    for i, h in enumerate(HORIZONS):
        y = x[origins + h]
        mu, s = mean[:, i], sd[:, i]
        mase = np.asarray(M.mase(y, mu, scale), np.float64)
        lo, hi = M.gaussian_interval(mu, s, 0.9)
        d = dict(
            mase=mase.tolist(),
            crps=np.asarray(np.mean(M.crps_gaussian(y, mu, s), axis=0), np.float64).tolist(),
            coverage=np.asarray(M.coverage(y, lo, hi), np.float64).tolist(),
        )
        if persistence_mase is not None:
            d["skill"] = np.asarray(M.skill(mase, persistence_mase[h]["mase"])).tolist()
        out[h] = d
    return out


def run_dataset(name: str, quick: bool) -> dict:
    t0 = time.perf_counter()
    if name == "sim":
        params = simulator.make_params()
        days = 120 if quick else 365
        obs = simulator.simulate(params, jax.random.key(7), days * 96)
        x, chs = simulator.row_telemetry(obs)
        spec, spd, window, stride = simulator.row_balance_spec(params), 96, 32, 4
        title = "Simulator (row preset, 15-min steps, 9 channels; 24 steps = 6 h)"
    else:
        w = load_tmy3(name)
        x = np.stack([w.temp_air, w.ghi], axis=1)
        chs, spec, spd, window, stride = ("temp_air", "ghi"), None, 24, 48, 1
        title = f"{name}: {w.station}, dry-bulb temperature and GHI, hourly (24 steps = 1 day)"
    x = np.asarray(x, np.float64)
    labels = month_labels(len(x), spd)
    hmax = max(HORIZONS)
    o_tr, o_va, o_te = split_origins(labels, window, hmax)
    o_va, o_te = o_va[::stride], o_te[::stride]
    t_tr = np.flatnonzero(labels == 0)
    t_tr = t_tr[t_tr >= 1]
    scale = np.mean(np.abs(x[t_tr] - x[t_tr - 1]), axis=0)  # in-sample one-step naive MAE
    scale = np.where(scale > 0, scale, 1.0)

    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    info: dict = {}
    # ---- NVP
    t1 = time.perf_counter()
    res, n_tr, n_va = train_nvp(x, labels, chs, spec, window)
    info["nvp_train_s"] = time.perf_counter() - t1
    info.update(
        nvp_windows_train=n_tr, nvp_windows_val=n_va, epochs=len(res.history), best=res.best_epoch
    )
    ab = res._replace(
        model=eqx.tree_at(
            lambda m: (m.head_mu.weight, m.head_mu.bias),
            res.model,
            (jnp.zeros_like(res.model.head_mu.weight), jnp.zeros_like(res.model.head_mu.bias)),
        )
    )
    hidx = np.asarray(HORIZONS) - 1
    t1 = time.perf_counter()
    for label, r in ((NVP, res), (ABL, ab)):
        fn = nvp_fn(r, spec)
        mu_v, sd_v = (a[:, hidx] for a in rollouts(fn, window, x, o_va, hmax))
        mu_t, sd_t = (a[:, hidx] for a in rollouts(fn, window, x, o_te, hmax))
        yv = np.stack([x[o_va + h] for h in HORIZONS], axis=1)
        z = np.abs(yv - mu_v) / np.maximum(sd_v, 1e-12)
        factor = np.quantile(z, 0.9, axis=0) / Z90  # (H, C), validation only
        if label == NVP:
            info["nvp_raw_coverage"] = {
                h: np.asarray(
                    M.coverage(x[o_te + h], *M.gaussian_interval(mu_t[:, i], sd_t[:, i]))
                ).tolist()
                for i, h in enumerate(HORIZONS)
            }
            info["nvp_sd_factor"] = {h: factor[i].tolist() for i, h in enumerate(HORIZONS)}
            bal = conservation.make_balance(spec, tuple(chs))
            if bal.defined:
                rel = conservation.relative_residual(bal, mu_t[:, 0], x[o_te])
                info["energy_fidelity_h1"] = float(np.mean(rel <= 0.01))
        preds[label] = (mu_t, sd_t * factor[None])
    info["nvp_rollout_s"] = time.perf_counter() - t1

    # ---- direct multi-horizon head on the trained (frozen) NVP
    t1 = time.perf_counter()
    phys = make_physics(spec, res.config.channels)

    def phi(o):
        return window_features(res.model, res.normalizer, phys, x, o)

    o_fit = o_tr[:: max(1, len(o_tr) // DIRECT_MAX_TRAIN)]
    std = np.asarray(res.normalizer.std, np.float64)
    head = fit_direct_head(phi(o_fit), o_fit, phi(o_va), o_va, x, std, HORIZONS, steps_per_day=spd)
    preds[DIRECT] = head.predict(phi(o_te), x, o_te, std)
    info["direct_fit_s"] = time.perf_counter() - t1
    info["direct_lambdas"] = list(head.lambdas)

    # ---- baselines
    t1 = time.perf_counter()
    ridge = RidgeAR.fit(x, o_tr, HORIZONS, lags=window, steps_per_day=spd, val_origins=o_va)
    info["ridge_lambdas"] = list(ridge.lambdas)
    info["ridge_fit_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    ets = HoltWinters.fit(x, 0, 14 * spd, spd)
    info["ets_fit_s"] = time.perf_counter() - t1
    for label, b in (
        ("persistence", Persistence()),
        ("seasonal naive (1 day)", SeasonalNaive(spd)),
        (f"ridge AR ({window} lags + time of day, direct)", ridge),
        ("ETS (A,Ad,A)", ets),
    ):
        preds[label] = calibrate(b, x, o_va, HORIZONS).predict(x, o_te)

    pers = score(x, o_te, *preds["persistence"], scale)
    table = {k: score(x, o_te, mu, sd, scale, pers) for k, (mu, sd) in preds.items()}
    return dict(
        name=name,
        title=title,
        channels=list(chs),
        std=x.std(0).tolist(),
        horizons=list(HORIZONS),
        n_origins=dict(train=len(o_tr), val=len(o_va), test=len(o_te)),
        stride=stride,
        table=table,
        info=info,
        wall_s=time.perf_counter() - t0,
        load_avg=list(os.getloadavg()),
        quick=quick,
    )


# ------------------------------------------------------------------------------- report
def _best_baseline(tab: dict, h: str) -> tuple[str, float]:
    rows = [(np.mean(v[h]["mase"]), k) for k, v in tab.items() if not k.startswith("NVP")]
    m, k = min(rows)
    return k, float(m)


def report(paths: list[str]) -> str:
    runs = [json.load(open(p)) for p in paths]
    out = [
        "# NVP forecasting: 1, 4 and 24 steps ahead on held-out time, against baselines",
        "",
        "Commands (each run on a 2-core CPU shared with other engineers' jobs, `nice -n 5`; "
        "load averages per run below):",
        "",
        "```",
        *[
            f"PYTHONPATH=. nice -n 5 python experiments/nvp_forecast.py --dataset {r['name']}"
            for r in runs
        ],
        "PYTHONPATH=. python experiments/nvp_forecast.py --report",
        "```",
        "",
        "Method: see the docstring of `experiments/nvp_forecast.py`. In short: months split "
        "into days 1-21 train / 22-24 validation / 25-end test; an origin is test when its 24 "
        "targets are test days; the NVP is rolled out iteratively from its one-step model, the "
        "ridge AR is direct (one fit per horizon), ETS is its own closed-form h-step forecast. "
        "Every predictive sd is fitted on validation origins (baselines: RMS error per "
        "horizon; NVP: its own sd times a per-horizon factor for 90 % validation coverage). "
        "MASE scale: in-sample one-step naive MAE on the training days (one scale for every "
        "horizon, so MASE grows with h). Skill = 1 - MASE / MASE_persistence. CRPS is "
        "Gaussian, divided by each channel's std, then averaged over channels. "
        f"NVP budget (short, to fit a shared CPU): model {MODEL_KW}, training {TRAIN}.",
        "",
    ]
    verdict = []
    for r in runs:
        tab, std = r["table"], np.asarray(r["std"])
        out += [f"## {r['title']}", ""]
        out.append(
            "| model | "
            + " | ".join(f"MASE h={h} | skill h={h} | CRPS h={h} | cover h={h}" for h in HORIZONS)
            + " |"
        )
        out.append("| --- " * (1 + 4 * len(HORIZONS)) + "|")
        for k, v in tab.items():
            cells = []
            for h in map(str, HORIZONS):
                d = v[h]
                cells += [
                    f"{np.mean(d['mase']):.3f}",
                    f"{np.mean(d['skill']):+.3f}",
                    f"{np.mean(np.asarray(d['crps']) / std):.4f}",
                    f"{np.mean(d['coverage']):.3f}",
                ]
            out.append(f"| {k} | " + " | ".join(cells) + " |")
        out += ["", "MASE per channel:", ""]
        out.append("| model | h | " + " | ".join(r["channels"]) + " |")
        out.append("| --- " * (2 + len(r["channels"])) + "|")
        for k, v in tab.items():
            for h in map(str, HORIZONS):
                out.append(f"| {k} | {h} | " + " | ".join(f"{m:.3f}" for m in v[h]["mase"]) + " |")
        info = r["info"]
        raw = info["nvp_raw_coverage"]
        out += [
            "",
            f"- origins train/val/test {r['n_origins']['train']}/{r['n_origins']['val']}/"
            f"{r['n_origins']['test']} (validation and test: "
            + ("every origin" if r["stride"] == 1 else f"every {r['stride']}th origin")
            + "); "
            f"NVP one-step windows {info['nvp_windows_train']}/{info['nvp_windows_val']}, "
            f"{info['epochs']} epochs (best {info['best']}), training "
            f"{info['nvp_train_s']:.0f} s, rollouts {info['nvp_rollout_s']:.0f} s; ETS fit "
            f"{info['ets_fit_s']:.0f} s; ridge strengths per horizon {info['ridge_lambdas']}; "
            f"wall {r['wall_s']:.0f} s at load average "
            f"{', '.join(f'{v:.1f}' for v in r['load_avg'])}"
            + (" (QUICK smoke run)" if r["quick"] else ""),
            "- NVP 90 % coverage before the per-horizon validation rescaling (its own one-step "
            "sd fed along the recursion): "
            + ", ".join(f"h={h} {np.mean(raw[str(h)]):.3f}" for h in HORIZONS),
        ]
        if "direct_fit_s" in info:
            out.append(
                f"- direct head: ridge readout per horizon of [window, transformer last "
                f"stream, time of day of the target] on the frozen NVP, fitted in "
                f"{info['direct_fit_s']:.0f} s (strengths {info['direct_lambdas']}); sd: RMS "
                "validation error per horizon"
            )
        if "energy_fidelity_h1" in info:
            out.append(
                f"- energy fidelity of the NVP's h=1 forecasts (|balance residual| <= 0.01 of "
                f"the gross flow): {100 * info['energy_fidelity_h1']:.1f} %"
            )
        out.append("")
        for h in ("4", "24"):
            kb, mb = _best_baseline(tab, h)
            mn = float(np.mean(tab[NVP][h]["mase"]))
            cov = float(np.mean(tab[NVP][h]["coverage"]))
            verdict.append((r["name"], h, mn, kb, mb, cov))
    out += [
        "## Verdict: does the NVP beat the best baseline (mean MASE) at horizons 4 and 24?",
        "",
        "| data | h | NVP MASE | best baseline | its MASE | NVP better | NVP coverage | "
        "in 0.87-0.93 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, h, mn, kb, mb, cov in verdict:
        out.append(
            f"| {name} | {h} | {mn:.3f} | {kb} | {mb:.3f} | "
            f"{'yes' if mn < mb else 'NO'} ({100 * (1 - mn / mb):+.1f} %) | {cov:.3f} | "
            f"{'yes' if 0.87 <= cov <= 0.93 else 'NO'} |"
        )
    direct_lines = []
    for r in runs:
        tab = r["table"]
        if DIRECT not in tab:
            continue
        cells = []
        for h in ("1", "4", "24"):
            kb, mb = _best_baseline(tab, h)
            md, mn = (float(np.mean(tab[k][h]["mase"])) for k in (DIRECT, NVP))
            cells.append(
                f"h={h}: direct {md:.3f} vs rolled-out {mn:.3f} vs best baseline {mb:.3f} "
                f"({kb}; direct {'better' if md < mb else 'NOT better'})"
            )
        direct_lines.append(f"- {r['name']}: " + "; ".join(cells))
    if direct_lines:
        out += [
            "",
            "Direct multi-horizon head against the rolled-out NVP and the best baseline "
            "(mean MASE on test origins):",
            "",
            *direct_lines,
        ]
    wins = [f"{n} h={h}" for n, h, mn, _, mb, _ in verdict if mn < mb]
    losses = [f"{n} h={h}" for n, h, mn, _, mb, _ in verdict if not mn < mb]
    cov_ok = [f"{n} h={h}" for n, h, *_, c in verdict if 0.87 <= c <= 0.93]
    abl = [
        float(np.mean(r["table"][ABL][h]["mase"]) / np.mean(r["table"][NVP][h]["mase"]) - 1)
        for r in runs
        for h in ("1", "4", "24")
    ]
    out += [
        "",
        "Plain statement (generated from the numbers above):",
        "",
        f"- The NVP beats the best baseline on mean MASE in {len(wins)} of {len(verdict)} "
        f"cells: {', '.join(wins) or 'none'}. It does not in {', '.join(losses) or 'none'}. "
        "The target (beat the best baseline at h = 4 and 24 on every data set) is "
        + ("met." if not losses else "NOT met."),
        f"- NVP 90 % coverage on test origins is within 0.87-0.93 in {len(cov_ok)} of "
        f"{len(verdict)} cells ({', '.join(cov_ok) or 'none'}); its intervals are rescaled per "
        "horizon on validation days (3 a month, few for a 24-step quantile), so the "
        "coverage target is " + ("met." if len(cov_ok) == len(verdict) else "NOT met everywhere."),
        "- The ablation without the transformer's mean head (linear AR path + correction MLP, "
        "iterated) is within "
        f"{100 * min(abl):+.1f} % to {100 * max(abl):+.1f} % of the full NVP's MASE across "
        "all data sets and horizons (positive: the ablation is worse): the transformer's mean "
        "head adds little.",
        "- The NVP is a one-step model rolled out iteratively; at h = 24 its errors compound, "
        "and the direct ridge AR (one regression per horizon) or persistence / the same hour "
        "yesterday is as good or better where the NVP loses.",
        "- Skill against persistence replaces 100 - MAPE (which does not discriminate: "
        "persistence already scores ~98 % on simulator power one step ahead).",
        "",
    ]
    return "\n".join(out + _setpoint_section())


def _setpoint_section() -> list[str]:
    """The packaged rack checkpoint at several setpoints (written by
    `experiments/nvp_default_checkpoint.py` into results/nvp_default_checkpoint.md)."""
    path = os.path.join(RESULTS, "nvp_default_checkpoint.md")
    mark = "## Forecasts at fixed setpoints"
    if not os.path.exists(path):
        return []
    with open(path) as f:
        text = f.read()
    if mark not in text:
        return []
    body = text.split(mark, 1)[1].strip()
    return [
        "## The packaged rack checkpoint: the setpoint is an input",
        "",
        "From `PYTHONPATH=. nice -n 5 python experiments/nvp_default_checkpoint.py` "
        "(results/nvp_default_checkpoint.md): the one-server checkpoint is trained on "
        "piecewise-constant setpoint schedules (16-27 °C) with the setpoint as a control "
        "channel, and evaluated at constant setpoints on unseen days.",
        "",
        body,
        "",
        "Plain statement: the setpoint model's MASE is the same at 18, 21 and 24 °C (the old "
        "fixed-18 °C checkpoint, forced to run at 21 °C, has mean MASE ~17 at h = 1); the "
        "direct ridge AR given the same setpoint channel (lagged and over the horizon) is "
        "better than the NVP at every horizon on this series (slightly at h = 1 and 4, "
        "clearly at h = 24, where the NVP's one-step recursion compounds its errors).",
        "",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", help="'sim' or a TMY file pvlib ships: " + ", ".join(TMY_FILES))
    ap.add_argument("--quick", action="store_true", help="smoke run (120 simulated days)")
    ap.add_argument("--report", action="store_true", help="assemble results/nvp.md")
    args = ap.parse_args()
    if args.report:
        names = ["sim", *TMY_FILES]
        paths = [os.path.join(RESULTS, f"nvp_forecast_{n}.json") for n in names]
        have = [p for p in paths if os.path.exists(p)]
        if not have:
            raise SystemExit("no results/nvp_forecast_*.json yet: run --dataset first")
        text = report(have)
        with open(os.path.join(RESULTS, "nvp.md"), "w") as f:
            f.write(text)
        print(text)
        return
    if args.dataset not in ("sim", *TMY_FILES):
        raise SystemExit(f"--dataset must be 'sim' or one of {', '.join(TMY_FILES)}")
    res = run_dataset(args.dataset, args.quick)
    path = os.path.join(RESULTS, f"nvp_forecast_{args.dataset}.json")
    if args.quick:
        path = os.path.join("/tmp", os.path.basename(path))
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "table"}, indent=1))
    for k, v in res["table"].items():
        print(
            k,
            {h: round(float(np.mean(d["mase"])), 3) for h, d in v.items()},
            {h: round(float(np.mean(d["coverage"])), 3) for h, d in v.items()},
        )


if __name__ == "__main__":
    main()
