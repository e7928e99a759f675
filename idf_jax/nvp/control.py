"""Action-conditioned NVP: control channels, excited training data, and vmappable rollouts.

The NVP transformer (`idf_jax.nvp.model`) forecasts the next row of a telemetry window. To make
it *action-conditioned* nothing in the architecture changes: the controls are ordinary channels
of the window, marked as controls. Row t holds the state observed at t (the meters' averages
over the interval that ended at t, end-of-interval temperatures) and the control applied over
[t, t+1); the model predicts the state channels of row t+1. The control channels of the target
are not scored (``loss_terms(..., target_mask)``), and the conservation projection leaves them
untouched (they have no coefficient in the balance spec), so the energy balance
``sum_r C (T_r' - T_r) = dt [P_IT' - Q' - g_env sum_r (T_r - T_out')]`` still holds exactly for
the predicted state.

Channels of the datacenter row preset (kW, °C, the units EIL works in), R racks:

- state: ``demand`` (offered load, share of all servers), ``it_power`` (kW), ``cooling_load``
  (heat removed by the CRAHs, kW), ``cooling_power`` (kW electric), ``outside_temp`` (°C),
  ``temp_0..temp_{R-1}`` (rack temperatures, °C);
- controls: ``setpoint`` (supply air, °C), ``power_cap_kw`` (IT cap, kW; no cap = the
  fleet's peak power), ``on_0..on_{R-1}`` (servers on per rack), ``share_0..share_{R-1}``
  (workload share per rack, sums to 1).

Training data (`excited_series`): the simulator driven by randomised, piecewise-constant
actions held for random durations (setpoint, cap, headroom of servers over demand and load
shares each switch independently), so that the effect of every control is identifiable.

`ControlledNVP` wraps a trained checkpoint: ``rollout(y, mask, control, steps)`` writes the
control into the last row, predicts the next state, appends it with the control held, and
repeats; it is a pure JAX function, so a planner can ``jax.vmap`` it over candidate controls
and differentiate it with respect to a continuous control. The packaged checkpoint
``checkpoints/eil_row.ckpt`` is trained by ``experiments/eil_nvp_checkpoint.py``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint as ckpt
from . import physics
from . import simulator as sim
from .loss import make_physics
from .model import embed_features, forecast

__all__ = [
    "ControlSpec",
    "ControlledNVP",
    "control_spec",
    "balance_spec",
    "excited_series",
    "EIL_CHECKPOINT",
]

EIL_CHECKPOINT = os.path.join(os.path.dirname(__file__), "checkpoints", "eil_row.ckpt")


class ControlSpec(NamedTuple):
    """Channel layout of an action-conditioned model (stored in the checkpoint header)."""

    state: tuple[str, ...]
    controls: tuple[str, ...]
    num_racks: int
    servers_per_rack: float
    dt: float
    cap_max_kw: float  # the encoding of "no cap": the fleet's peak IT power

    @property
    def channels(self) -> tuple[str, ...]:
        return self.state + self.controls

    @property
    def units(self) -> dict[str, str]:
        """Unit of every channel (`idf_jax.nvp.metadata`): kW powers, °C temperatures,
        demand as a share of the fleet, servers on as counts, shares as load weights."""

        def unit(c: str) -> str:
            if c == "demand":
                return "fraction"
            if c.endswith("_power") or c.endswith("_load") or c.endswith("_kw"):
                return "kW"
            if c.startswith("temp_") or c in ("outside_temp", "setpoint"):
                return "degC"
            if c.startswith("on_"):
                return "count"
            if c.startswith("share_"):
                return "weight"
            return "unspecified"

        return {c: unit(c) for c in self.channels}

    def to_json(self) -> dict:
        d = self._asdict()
        d["state"], d["controls"] = list(self.state), list(self.controls)
        return d

    @classmethod
    def from_json(cls, d: dict) -> ControlSpec:
        return cls(
            tuple(d["state"]),
            tuple(d["controls"]),
            int(d["num_racks"]),
            float(d["servers_per_rack"]),
            float(d["dt"]),
            float(d["cap_max_kw"]),
        )


def control_spec(params: sim.DatacenterParams) -> ControlSpec:
    r = params.num_racks
    state = ("demand", "it_power", "cooling_load", "cooling_power", "outside_temp") + tuple(
        f"temp_{i}" for i in range(r)
    )
    controls = (
        ("setpoint", "power_cap_kw")
        + tuple(f"on_{i}" for i in range(r))
        + tuple(f"share_{i}" for i in range(r))
    )
    cap = r * params.servers_per_rack * float(params.p_peak_kw)
    return ControlSpec(state, controls, r, float(params.servers_per_rack), float(params.dt), cap)


def balance_spec(params: sim.DatacenterParams) -> dict:
    """`simulator.row_balance_spec` in this layout's channel names (kJ, kW, °C)."""
    r = params.num_racks
    c = float(params.heat_capacity_kj_per_k)
    temps = [f"temp_{i}" for i in range(r)]
    return dict(
        dt=float(params.dt),
        storage={t: c for t in temps},
        inflow={"it_power": 1.0},
        outflow={"cooling_load": 1.0},
        leaks=[dict(hot=t, cold="outside_temp", g=float(params.envelope_kw_per_k)) for t in temps],
        util_channels=[f"share_{i}" for i in range(r)],
        layout=temps,
        heat_flows=[
            dict(
                flow="cooling_load",
                hot=temps,
                cold_value=physics.CHILLED_WATER_C,
                offset_k=physics.KELVIN,
            )
        ],
        unit_energy="kJ",
    )


def encode_controls(
    spec: ControlSpec, setpoint, power_cap_kw, servers_on, weights, *, xp: ModuleType = np
) -> Any:
    """Control vector(s) (..., 2 + 2R) of operating points: setpoint, cap (inf -> the fleet's
    peak `cap_max_kw`), servers on per rack, workload shares (`physics.shares`). numpy float64
    on the host; ``xp=jax.numpy`` inside a jitted function (in the inputs' dtype)."""

    def arr(v):
        return np.asarray(v, np.float64) if xp is np else xp.asarray(v)

    sp = arr(setpoint)
    cap = xp.minimum(arr(power_cap_kw), spec.cap_max_kw)
    on = arr(servers_on)
    w = physics.shares(arr(weights), xp=xp)
    return xp.concatenate([sp[..., None], cap[..., None], on, w], axis=-1)


def _segments(rng, n, mean_hold):
    """Start flags of piecewise-constant segments with geometric holding times."""
    flags = np.zeros(n, bool)
    t = 0
    while t < n:
        flags[t] = True
        t += int(rng.geometric(1.0 / mean_hold))
    return flags


def excited_actions(
    params: sim.DatacenterParams, num_steps: int, seed: int, offset: int = 0
) -> sim.Action:
    """Randomised per-step actions (num_steps, ...) for system identification.

    Setpoint uniform in [16, 27] °C; cap none (60 %) or uniform in [0.35, 1] of the fleet peak;
    servers per rack tracking the deterministic demand profile with a random headroom factor
    in [0.9, 2.5] plus 0-4 spares (or all on, 20 %); shares uniform, the base shares, or a
    random Dirichlet(8) draw. Each lever switches independently (mean hold 6 intervals).
    """
    rng = np.random.default_rng(seed)
    r, n = params.num_racks, params.servers_per_rack
    steps = np.arange(offset, offset + num_steps)
    prof = np.asarray(sim.demand_profile(params, jnp.asarray(steps)), np.float64)
    sp = np.empty(num_steps)
    cap = np.empty(num_steps)
    on = np.empty((num_steps, r))
    w = np.empty((num_steps, r))
    peak = r * n * float(params.p_peak_kw)
    base_w = np.asarray(params.base_weights, np.float64)
    cur = dict(sp=18.0, cap=np.inf, head=1.5, spare=2, all_on=True, w=base_w)
    f_sp, f_cap, f_on, f_w = (_segments(rng, num_steps, 6.0) for _ in range(4))
    for t in range(num_steps):
        if f_sp[t]:
            cur["sp"] = rng.uniform(16.0, 27.0)
        if f_cap[t]:
            cur["cap"] = np.inf if rng.random() < 0.6 else rng.uniform(0.35, 1.0) * peak
        if f_on[t]:
            cur["all_on"] = rng.random() < 0.2
            cur["head"], cur["spare"] = rng.uniform(0.9, 2.5), int(rng.integers(0, 5))
        if f_w[t]:
            u = rng.random()
            cur["w"] = (
                np.full(r, 1.0 / r)
                if u < 0.4
                else base_w
                if u < 0.6
                else rng.dirichlet(np.full(r, 8.0))
            )
        sp[t], cap[t], w[t] = cur["sp"], cur["cap"], cur["w"]
        if cur["all_on"]:
            on[t] = n
        else:
            need = prof[t] * r * n * cur["w"]
            on[t] = np.clip(np.ceil(need * cur["head"]) + cur["spare"], 1, n)
    f32 = jnp.float32
    return sim.Action(
        jnp.asarray(sp, f32), jnp.asarray(cap, f32), jnp.asarray(on, f32), jnp.asarray(w, f32)
    )


@eqx.filter_jit
def _run(params, state, actions, keys):
    def body(s, xs):
        a, k = xs
        return sim.step(params, s, a, k)

    _, obs = jax.lax.scan(body, state, (actions, keys))
    return obs


def excited_series(
    params: sim.DatacenterParams, key, num_steps: int, seed: int, burn_in: int = 96
) -> tuple[np.ndarray, ControlSpec]:
    """(T - 1, C) rows [state(obs_t), control(a_{t+1})] under excited actions (module doc)."""
    spec = control_spec(params)
    act0 = sim.default_action(params)
    burn = jax.tree.map(lambda x: jnp.broadcast_to(x, (burn_in,) + x.shape), act0)
    acts = excited_actions(params, num_steps, seed, offset=burn_in)
    allacts = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), burn, acts)
    keys = jax.random.split(key, burn_in + num_steps)
    obs = _run(params, sim.init_state(params), allacts, keys)
    obs = {k: np.asarray(v, np.float64)[burn_in:] for k, v in obs.items()}
    state = np.concatenate(
        [
            np.stack(
                [obs["demand"], obs["power"], obs["cooling"], obs["cooling_power"], obs["t_out"]], 1
            ),
            obs["temps"],
        ],
        axis=1,
    )
    ctrl = encode_controls(
        spec,
        np.asarray(acts.setpoint),
        np.asarray(acts.power_cap),
        np.asarray(acts.servers_on),
        np.asarray(acts.weights),
    )
    return np.concatenate([state[:-1], ctrl[1:]], axis=1), spec


class ControlledNVP:
    """A trained action-conditioned NVP checkpoint (module doc); pure, vmappable rollouts."""

    def __init__(self, path: str | None = None):
        path = EIL_CHECKPOINT if path is None else path
        model, cfg, norm, bal_spec, header = ckpt.load(path)
        extra = header.get("extra") or {}
        if "control" not in extra:
            raise ValueError(
                f"{path} is not an action-conditioned NVP checkpoint "
                "(no 'control' section in its header)"
            )
        self.path = path
        self.model, self.config, self.norm, self.balance_spec = model, cfg, norm, bal_spec
        self.spec = ControlSpec.from_json(extra["control"])
        if self.spec.channels != cfg.channels:
            raise ValueError(f"{path}: control spec channels do not match the model's")
        self.meta = extra
        self.series = ckpt.series_of(header)
        self.phys = make_physics(bal_spec, cfg.channels)
        self.window = cfg.window
        ns = len(self.spec.state)
        self.state_idx = np.arange(ns)
        self.control_idx = np.arange(ns, cfg.num_channels)
        self.index = {c: i for i, c in enumerate(cfg.channels)}
        st = bal_spec.get("storage", {}) if bal_spec else {}
        self.storage = np.array([st.get(c, 0.0) for c in cfg.channels], np.float64)

    # pure functions (jit / vmap / grad friendly) ------------------------------------------
    def step(self, y, mask, control, cache=None):
        """Forecast of the next row given the window `y` (L, C) whose last row gets `control`.

        Returns (mean (C,), var (C,)) in physical units (balance-projected); the control
        channels of the result are the held control. `cache`: keys and values of the
        window's first rows (`NVPModel.prefix_cache`), not recomputed.
        """
        ci = jnp.asarray(self.control_idx)
        y = y.at[-1, ci].set(control.astype(y.dtype))
        fc = forecast(self.model, self.phys.balance, self.norm, self.phys.util_idx, y, mask, cache)
        mean = fc.mean.at[ci].set(control.astype(y.dtype))
        var = fc.var.at[ci].set(0.0)
        return mean, var

    def prefix(self, y, mask, steps: int):
        """What every candidate control's rollout of this window shares, per step h: the keys
        and values of the window's first L - S positions (S = min(steps, L)), which at step
        h < steps are still observed history (rows h .. h + L - S - 1 <= L - 2). The model is
        causal, so those positions see neither the control written into the last row nor
        any prediction. Computed once, used by `rollout_from` for every candidate, it leaves
        S positions per step to the candidate instead of L. Stacked over the steps."""
        y, mask = jnp.asarray(y), jnp.asarray(mask)
        keep = self.window - min(steps, self.window)
        # rows past the observed history are placeholders: the cached positions never see them
        yy = jnp.concatenate([y, jnp.repeat(y[-1:], steps, 0)])
        mm = jnp.concatenate([mask, jnp.ones((steps,), bool)])

        def at(h):
            yh = jax.lax.dynamic_slice_in_dim(yy, h, self.window)
            mh = jax.lax.dynamic_slice_in_dim(mm, h, self.window)
            _, feats = embed_features(yh, mh, self.norm, self.phys.balance, self.phys.util_idx)
            return self.model.prefix_cache(feats, mh, keep)

        return jax.vmap(at)(jnp.arange(steps))

    def rollout_from(self, prefix, y, mask, control):
        """`rollout` with the shared part precomputed (`prefix(y, mask, steps)`): jax.vmap it
        over candidate controls with `prefix` closed over, or differentiate it in `control`.
        Returns means and variances (steps, C)."""

        def body(carry, cache):
            yy, mm = carry
            mean, var = self.step(yy, mm, control, cache)
            yy = jnp.concatenate([yy[1:], mean[None]], axis=0)
            mm = jnp.concatenate([mm[1:], jnp.ones((1,), bool)])
            return (yy, mm), (mean, var)

        _, (means, vars_) = jax.lax.scan(body, (jnp.asarray(y), jnp.asarray(mask)), prefix)
        return means, vars_

    def rollout(self, y, mask, control, steps: int):
        """Hold `control` for `steps` intervals: means and variances (steps, C)."""
        return self.rollout_from(self.prefix(y, mask, steps), y, mask, control)

    def pad(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Left-pad (repeat the first row) / crop a (T, C) history to the model window."""
        rows = np.asarray(rows, np.float32)[-self.window :]
        t = rows.shape[0]
        mask = np.zeros(self.window, bool)
        mask[self.window - t :] = True
        if t < self.window:
            rows = np.concatenate([np.repeat(rows[:1], self.window - t, 0), rows], axis=0)
        return rows, mask
