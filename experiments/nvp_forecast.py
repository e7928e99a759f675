"""NVP one-step forecasting on held-out time ranges of two data sets, against baselines.

    PYTHONPATH=. python experiments/nvp_forecast.py [--quick]

Data sets
  * sim:  one year of the datacenter simulator's row preset (`simulator.make_params`, 4 racks,
          15-minute steps, TMY3 outside air of Greensboro NC), 9 channels.
  * tmy3: the real hourly TMY3 series shipped with pvlib (723170TYA.CSV): dry-bulb temperature
          (deg C) and global horizontal irradiance (W/m^2), forecast directly.
Held-out ranges: in every month, days 1-21 train, 22-24 validation, 25-end test; training and
validation windows whose inputs touch a test range are dropped (no leakage of test values).
Baselines (same script, same test targets): last value, seasonal naive (24 h), ridge
autoregression (all channels, same lag window as NVP, ridge strength chosen on validation),
statsmodels Holt-Winters ETS (damped additive trend, additive 24-h season; smoothing parameters
fitted on training data, applied one-step-ahead through the test ranges). Baselines get
Gaussian predictive intervals from their validation residual std, so CRPS is comparable.
Metrics (test targets): MAE, RMSE, MAPE (points with |y| >= 0.1 mean|y|), MASE (scale: in-sample
one-step naive MAE on training data), Gaussian CRPS; NVP also energy fidelity (share of
predictions meeting the balance to 0.01 relative) and 90% interval coverage.
NVP: linear AR path (ridge) + correction MLP over its forecast + causal transformer heads, see
the header of the written report. Writes experiments/results/nvp.md.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erf

from idf_jax.nvp import conservation, simulator
from idf_jax.nvp.loss import make_physics
from idf_jax.nvp.model import NVPConfig, fit_normalizer, forecast
from idf_jax.nvp.train import TrainConfig, train_windows
from idf_jax.nvp.weather import load_tmy3

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_KW = dict(d_model=32, num_layers=2, lin_head=64)
Z90 = 1.6448536269514722


def month_labels(num_steps: int, steps_per_day: int) -> np.ndarray:
    """0 train (days 1-21 of each 30.4-day month), 1 validation (22-24), 2 test (25-end)."""
    day = np.arange(num_steps) // steps_per_day
    month_len = 365.0 / 12.0
    dom = np.floor(day - np.floor(day / month_len) * month_len).astype(int)
    return np.where(dom < 21, 0, np.where(dom < 24, 1, 2))


def split_targets(labels: np.ndarray, window: int, min_history: int):
    """Target indices per split; train/val targets whose window touches test are dropped."""
    t = np.arange(len(labels))
    is_test = (labels == 2).astype(int)
    csum = np.concatenate([[0], np.cumsum(is_test)])
    lo = np.maximum(t - window, 0)
    touches = (csum[t + 1] - csum[lo]) > 0
    ok = t >= max(min_history, 96 * 2)
    return [
        t[ok & (labels == 0) & ~touches],
        t[ok & (labels == 1) & ~touches],
        t[ok & (labels == 2)],
    ]


def windows_at(x, idx, window):
    offs = np.arange(-window, 0)
    j = idx[:, None] + offs[None, :]
    mask = j >= 0
    j = np.maximum(j, 0)
    return x[j], mask, x[idx]


def crps_gaussian(y, mu, sd):
    sd = np.maximum(sd, 1e-12)
    z = (y - mu) / sd
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + erf(z / math.sqrt(2)))
    return sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def metrics(y, mu, sd, scale):
    err = mu - y
    mae = np.abs(err).mean(0)
    big = np.abs(y) >= 0.1 * np.abs(y).mean(0)
    mape = np.array(
        [100 * np.mean(np.abs(err[big[:, c], c] / y[big[:, c], c])) for c in range(y.shape[1])]
    )
    return dict(
        MAE=mae,
        RMSE=np.sqrt((err**2).mean(0)),
        MAPE=mape,
        MASE=mae / scale,
        CRPS=crps_gaussian(y, mu, sd).mean(0),
    )


def ridge_fit(x, idx_tr, idx_va, lags):
    def design(idx):
        j = idx[:, None] + np.arange(-lags, 0)[None, :]
        return x[j].reshape(len(idx), -1), x[idx]

    xtr, ytr = design(idx_tr)
    xva, yva = design(idx_va)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    ym = ytr.mean(0)
    a = (xtr - mu) / sd
    best = None
    for lam in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0):
        w = np.linalg.solve(a.T @ a + lam * len(a) * 1e-3 * np.eye(a.shape[1]), a.T @ (ytr - ym))
        pred = ((xva - mu) / sd) @ w + ym
        score = np.mean(((pred - yva) / (ytr.std(0) + 1e-9)) ** 2)
        if best is None or score < best[0]:
            best = (score, lam, w)
    _, lam, w = best
    return (lambda idx: ((design(idx)[0] - mu) / sd) @ w + ym), lam


def ets_forecasts(x, labels, idx_te, period, idx_tr):
    """One-step Holt-Winters forecasts at idx_te, parameters fitted on the first training run."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    out = np.zeros((len(idx_te), x.shape[1]))
    # the longest contiguous training range fits the smoothing parameters
    starts = np.flatnonzero(np.diff(np.concatenate([[0], (labels == 0).astype(int)])) == 1)
    ends = np.flatnonzero(np.diff(np.concatenate([(labels == 0).astype(int), [0]])) == -1) + 1
    k = np.argmax(ends - starts)
    fit_rng = slice(starts[k], ends[k])
    for c in range(x.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ExponentialSmoothing(
                x[fit_rng, c],
                trend="add",
                damped_trend=True,
                seasonal="add",
                seasonal_periods=period,
                initialization_method="estimated",
            ).fit()
        p = res.params
        # run through each test block with 3 days of context, fixed smoothing parameters
        blocks = np.split(idx_te, np.flatnonzero(np.diff(idx_te) > 1) + 1)
        pos = 0
        for b in blocks:
            lo = max(0, b[0] - 3 * period)
            seg = x[lo : b[-1] + 1, c]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = ExponentialSmoothing(
                    seg,
                    trend="add",
                    damped_trend=True,
                    seasonal="add",
                    seasonal_periods=period,
                    initialization_method="heuristic",
                ).fit(
                    smoothing_level=p["smoothing_level"],
                    smoothing_trend=p["smoothing_trend"],
                    smoothing_seasonal=p["smoothing_seasonal"],
                    damping_trend=p["damping_trend"],
                    optimized=False,
                )
            out[pos : pos + len(b), c] = m.fittedvalues[b - lo]
            pos += len(b)
    return out


def nvp_predict(res, spec, xw, mw, batch=1024):
    phys = make_physics(spec, res.config.channels)
    fn = jax.jit(
        jax.vmap(
            lambda y, m: forecast(res.model, phys.balance, res.normalizer, phys.util_idx, y, m)
        )
    )
    outs = []
    for i in range(0, len(xw), batch):
        yb = xw[i : i + batch].astype(np.float32)
        mb = mw[i : i + batch]
        n = len(yb)
        if n < batch:
            yb = np.concatenate([yb, np.repeat(yb[-1:], batch - n, 0)])
            mb = np.concatenate([mb, np.repeat(mb[-1:], batch - n, 0)])
        fc = fn(yb, mb)
        outs.append([np.asarray(a, np.float64)[:n] for a in fc])
    return [np.concatenate([o[k] for o in outs]) for k in range(4)]


def run_dataset(name, x, channels, spec, steps_per_day, window, tcfg, mcfg_kw):
    labels = month_labels(len(x), steps_per_day)
    min_hist = 2
    idx_tr, idx_va, idx_te = split_targets(labels, window, min_hist)
    scale = np.abs(np.diff(x, axis=0))[idx_tr - 1].mean(0)  # in-sample naive MAE (train)

    # NVP
    cfg = NVPConfig(channels=tuple(channels), window=window, min_history=min_hist, **mcfg_kw)
    # each split's windows are fed as "series" of pre-cut windows
    t0 = time.perf_counter()
    res = train_on_windows(x, idx_tr, idx_va, cfg, spec, tcfg)
    train_s = time.perf_counter() - t0
    xw, mw, yte = windows_at(x, idx_te, window)
    mean_raw, _, mean, var = nvp_predict(res, spec, xw, mw)  # Forecast field order
    sd = np.sqrt(var)
    xv, mv, yva = windows_at(x, idx_va, window)

    preds = {}
    preds["NVP"] = (mean, sd)
    # ablation (not a baseline): the same trained model without the transformer's mean head,
    # i.e. linear AR path + correction MLP, projected with the same variances
    ab = res._replace(
        model=eqx.tree_at(
            lambda m: (m.head_mu.weight, m.head_mu.bias),
            res.model,
            (jnp.zeros_like(res.model.head_mu.weight), jnp.zeros_like(res.model.head_mu.bias)),
        )
    )
    ab_mean = nvp_predict(ab, spec, xw, mw)[2]
    preds["NVP w/o transformer mean head (ablation)"] = (ab_mean, sd)

    # baselines: point forecasts + Gaussian sd from validation residuals
    def with_sd(fn):
        pv = fn(idx_va)
        return fn(idx_te), np.std(pv - x[idx_va], axis=0)

    last = lambda idx: x[idx - 1]
    season = lambda idx: x[idx - steps_per_day]
    ridge, lam = ridge_fit(x, idx_tr, idx_va, window)
    for bname, fn in (
        ("last value", last),
        ("seasonal naive 24h", season),
        (f"ridge AR ({window} lags, lambda={lam:g})", ridge),
    ):
        p, s = with_sd(fn)
        preds[bname] = (p, np.broadcast_to(s, p.shape))
    t1 = time.perf_counter()
    ets_te = ets_forecasts(x, labels, idx_te, steps_per_day, idx_tr)
    ets_va = ets_forecasts(x, labels, idx_va, steps_per_day, idx_tr)
    ets_s = time.perf_counter() - t1
    preds["ETS (Holt-Winters)"] = (ets_te, np.broadcast_to(np.std(ets_va - yva, 0), ets_te.shape))

    table = {k: metrics(yte, p, s, scale) for k, (p, s) in preds.items()}
    extra = dict(
        train_s=train_s,
        ets_s=ets_s,
        n_train=len(idx_tr),
        n_val=len(idx_va),
        n_test=len(idx_te),
        best_epoch=res.best_epoch,
        epochs=len(res.history),
    )
    lo, hi = mean - Z90 * sd, mean + Z90 * sd
    inside = (yte >= lo) & (yte <= hi)
    extra["coverage"] = inside.mean(0)
    extra["coverage_all"] = inside.mean()
    bal = conservation.make_balance(spec, tuple(channels))
    if bal.defined:
        last_obs = x[idx_te - 1]
        rel = conservation.relative_residual(bal, mean, last_obs)
        rel_raw = conservation.relative_residual(bal, mean_raw, last_obs)
        extra["fidelity"] = float(np.mean(rel <= 0.01))
        extra["fidelity_raw"] = float(np.mean(rel_raw <= 0.01))
        extra["max_rel_residual"] = float(rel.max())
        extra["fidelity_data"] = float(
            np.mean(conservation.relative_residual(bal, yte, last_obs) <= 0.01)
        )
        for k, (p, _) in preds.items():
            if not k.startswith("NVP"):
                extra.setdefault("fidelity_baselines", {})[k] = float(
                    np.mean(conservation.relative_residual(bal, p, last_obs) <= 0.01)
                )
    return table, extra


def train_on_windows(x, idx_tr, idx_va, cfg, spec, tcfg):
    """Train on exactly the given target indices (blocked split, leakage-free); the
    normaliser is fitted on the training targets only."""
    bal = make_physics(spec, cfg.channels).balance
    # one-step differences for diff_std and energy flows must be consecutive: use train runs
    runs = np.split(idx_tr, np.flatnonzero(np.diff(idx_tr) > 1) + 1)
    norm = fit_normalizer([x[r[0] - 1 : r[-1] + 1] for r in runs if len(r) > 1], bal)
    return train_windows(
        windows_at(x, idx_tr, cfg.window),
        windows_at(x, idx_va, cfg.window),
        norm,
        cfg,
        spec,
        tcfg,
        progress=False,
    )


def fmt_table(name, channels, table, extra):
    lines = [
        f"### {name}",
        "",
        "Mean over channels (MASE is the target metric):",
        "",
        "| model | MASE | MAE (norm.) | CRPS (norm.) |",
        "| --- | --- | --- | --- |",
    ]
    for k, m in table.items():
        lines.append(
            f"| {k} | {m['MASE'].mean():.3f} | "
            f"{np.mean(m['MAE'] / extra['std']):.4f} | "
            f"{np.mean(m['CRPS'] / extra['std']):.4f} |"
        )
    lines += ["", "Per channel:", ""]
    for metric in ("MASE", "MAE", "RMSE", "MAPE", "CRPS"):
        lines.append(f"| {metric} | " + " | ".join(channels) + " |")
        lines.append("| --- " * (len(channels) + 1) + "|")
        for k, m in table.items():
            lines.append(f"| {k} | " + " | ".join(f"{v:.4g}" for v in m[metric]) + " |")
        lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    args = ap.parse_args()
    epochs = 1 if args.quick else 12
    out = [
        "# NVP forecasting: held-out time ranges, one step ahead",
        "",
        "Command: `PYTHONPATH=. python experiments/nvp_forecast.py` on a 2-core CPU shared "
        "with other jobs (timings are loaded-machine wall times).",
        "",
        "Split: in every month days 1-21 train, 22-24 validation, 25-end test; training "
        "windows touching a test range are dropped. MASE scale: in-sample one-step naive MAE "
        "on the training targets. Baseline intervals: Gaussian with the validation residual "
        "std. MAPE over points with |y| >= 0.1 mean|y|. Normalised MAE/CRPS: divided by the "
        "channel's std.",
        "",
        "NVP (`idf_jax.nvp`, model "
        + ", ".join(f"{k}={v}" for k, v in MODEL_KW.items())
        + "): stage 1, the linear AR path over the window, closed-form ridge on the training "
        "windows (strength chosen on validation), frozen; stage 2, the correction MLP over the "
        "linear forecast (`lin_head`, Huber loss on the training windows, kept only if it "
        "lowers the validation loss), frozen; stage 3, the causal transformer's mean and "
        "log-variance heads trained with the physics loss, all in units of the linear path's "
        "training residual std (`Normalizer.res_std`); the conservation layer projects the "
        "result. The ablation row is the same trained model without the transformer's mean "
        "head (it is not a baseline and not counted in the targets).",
        "",
    ]
    summary = []
    t_script = time.perf_counter()

    # ---- simulator
    params = simulator.make_params()
    obs = simulator.simulate(params, jax.random.key(7), 365 * 96)
    xs, chs = simulator.row_telemetry(obs)
    spec = simulator.row_balance_spec(params)
    tcfg = TrainConfig(
        epochs=epochs,
        batch_size=64,
        learning_rate=3e-3,
        patience=4,
        seed=0,
        max_epoch_windows=512 if args.quick else 6144,
    )
    tab, ext = run_dataset("sim", xs, chs, spec, 96, 32, tcfg, MODEL_KW)
    ext["std"] = xs.std(0)
    out += fmt_table("Simulator (row preset, 15-min steps, 9 channels)", chs, tab, ext)
    p = chs.index("power")
    out += [
        f"- simulator one-step power skill against persistence (1 - MASE_NVP / MASE_last): "
        f"{1 - tab['NVP']['MASE'][p] / tab['last value']['MASE'][p]:+.3f} (100 % - MAPE is "
        f"not reported: last value alone scores {100 - tab['last value']['MAPE'][p]:.2f} % on it)",
        f"- energy fidelity (|residual| <= 0.01 of gross flow): NVP {100 * ext['fidelity']:.2f}%"
        f" (raw network output before the conservation layer {100 * ext['fidelity_raw']:.2f}%;"
        f" max relative residual {ext['max_rel_residual']:.1e}; the simulator's own data "
        f"{100 * ext['fidelity_data']:.2f}%); baselines: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in ext["fidelity_baselines"].items()),
        f"- NVP 90% interval coverage: {100 * ext['coverage_all']:.1f}% overall; per channel "
        + ", ".join(f"{c} {100 * v:.1f}%" for c, v in zip(chs, ext["coverage"])),
        f"- windows train/val/test {ext['n_train']}/{ext['n_val']}/{ext['n_test']}; NVP "
        f"training {ext['train_s']:.0f} s ({ext['epochs']} epochs, best {ext['best_epoch']});"
        f" ETS fits {ext['ets_s']:.0f} s",
        "",
    ]
    summary.append(("sim", tab, ext))

    # ---- TMY3 real weather
    w = load_tmy3()
    xt = np.stack([w.temp_air, w.ghi], axis=1)
    cht = ("temp_air", "ghi")
    tab2, ext2 = run_dataset("tmy3", xt, cht, None, 24, 48, tcfg, MODEL_KW)
    ext2["std"] = xt.std(0)
    out += fmt_table(f"TMY3 {w.station}: dry-bulb temperature and GHI, hourly", cht, tab2, ext2)
    out += [
        f"- NVP 90% interval coverage: {100 * ext2['coverage_all']:.1f}% overall; per channel "
        + ", ".join(f"{c} {100 * v:.1f}%" for c, v in zip(cht, ext2["coverage"])),
        f"- windows train/val/test {ext2['n_train']}/{ext2['n_val']}/{ext2['n_test']}; NVP "
        f"training {ext2['train_s']:.0f} s ({ext2['epochs']} epochs, best "
        f"{ext2['best_epoch']}); ETS fits {ext2['ets_s']:.0f} s",
        "",
    ]
    summary.append(("tmy3", tab2, ext2))

    # ---- targets
    out += ["## Targets", "", "| target | result | met |", "| --- | --- | --- |"]
    for name, tab_, ext_ in summary:
        nvp = tab_["NVP"]["MASE"].mean()
        best = min((v["MASE"].mean(), k) for k, v in tab_.items() if not k.startswith("NVP"))
        out.append(
            f"| NVP beats every baseline on mean MASE ({name}) | NVP {nvp:.3f} vs best "
            f"baseline {best[1]} {best[0]:.3f} | {'yes' if nvp < best[0] else 'no'} |"
        )
    for name, tab_, _ in summary:
        sk = 1 - tab_["NVP"]["MASE"] / tab_["last value"]["MASE"]
        out.append(
            f"| NVP skill against persistence > 0 on every channel ({name}) | "
            f"{', '.join(f'{v:+.3f}' for v in sk)} | {'yes' if (sk > 0).all() else 'no'} |"
        )
    out.append(
        f"| energy fidelity 100% | {100 * ext['fidelity']:.2f}% | "
        f"{'yes' if ext['fidelity'] == 1.0 else 'no'} |"
    )
    for name, _, ext_ in summary:
        c = 100 * ext_["coverage_all"]
        out.append(
            f"| 90% interval covers 85-95% ({name}) | {c:.1f}% | "
            f"{'yes' if 85 <= c <= 95 else 'no'} |"
        )
    out += [
        "",
        f"Script wall time {time.perf_counter() - t_script:.0f} s (NVP training: sim "
        f"{ext['train_s']:.0f} s, TMY3 {ext2['train_s']:.0f} s; each under the 10-minute "
        f"budget: {'yes' if max(ext['train_s'], ext2['train_s']) < 600 else 'no'}).",
        "",
    ]
    text = "\n".join(out)
    if not args.quick:
        with open(os.path.join(HERE, "results", "nvp.md"), "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
