"""Prove: a prediction judged on the measured outcome, and the proof-of-prediction (PFT) amount.

Measured, not reported. A prediction made on the reading stamped ``t0`` forecasts the
interval that ends at ``t_end = t0 + interval_s``; its outcome is the first reading of the
same source in the telemetry store stamped within ``OUTCOME_SLACK * interval_s`` of
``t_end`` (`outcome_window`). Until the horizon has passed and that reading is stored, the
prediction is ``pending``: nothing is written and it can be proven later. The measured
state is ``energy`` and ``entropy`` of that reading, its ``power``, and ``temp`` (the mean
of the rack temperatures ``temp_i`` when reported, else ``temp``; `measured_of`).

A client may send the outcome it observed (``actual_state``): it is a claim, checked
against the measurement with the same tolerance, and never a source of reward. A claim
the telemetry contradicts is recorded as ``contradicted`` with no reward (`claim_check`);
a claim within tolerance changes nothing (under-reporting the energy pays no more).

The stated tolerance: relative error <= ``tolerance`` on ``energy``, ``entropy`` and ``power``,
and |error| <= ``temp_tolerance`` K on ``temp``.
``accuracy = 1 - |E_pred - E_measured| / E_measured``; verified savings
``= max(0, E_noop_pred - E_measured)`` (kWh), where ``E_noop_pred`` is the forecast, recorded
at decision time, for keeping the previous operating point. When valid:

    pft_amount = accuracy * (1 + verified_savings_kwh)

(1 PFT for an exact prediction plus 1 PFT per verified kWh saved, scaled by accuracy);
otherwise 0.
"""

from __future__ import annotations

import time
from typing import Any

from .goals import as_float
from .ledger import LedgerRecord
from .store import EnergyReading

__all__ = [
    "ACTUAL_KEYS",
    "FORMULA",
    "OUTCOME_SLACK",
    "actual_of",
    "claim_check",
    "measured_of",
    "outcome_window",
    "pending_result",
    "proof_result",
    "verdict",
]

ACTUAL_KEYS = ("energy", "entropy", "power", "temp")
FORMULA = "pft = accuracy * (1 + verified_savings_kwh) if valid else 0; measured outcome"
OUTCOME_SLACK = 0.25
"""Share of the interval by which the outcome reading's timestamp may miss the horizon."""


def actual_of(actual_state: Any) -> dict[str, float]:
    """A validated outcome claim: a dict with 'energy' (kJ, > 0) and optionally 'entropy'
    (kJ/K), 'power' (kW), 'temp' (°C); ValueError naming the problem otherwise."""
    if not isinstance(actual_state, dict) or "energy" not in actual_state:
        raise ValueError("actual_state must be a dict with at least 'energy' (kJ)")
    unknown = set(actual_state) - set(ACTUAL_KEYS)
    if unknown:
        raise ValueError(f"unknown actual_state keys {sorted(unknown)}; known: {ACTUAL_KEYS}")
    actual = {k: as_float(f"actual_state[{k!r}]", v) for k, v in actual_state.items()}
    if actual["energy"] <= 0:
        raise ValueError("actual energy must be > 0 kJ")
    return actual


def outcome_window(prediction: dict[str, Any]) -> tuple[float, float, float]:
    """(earliest, nominal, latest) timestamp of the reading that measures a prediction's
    outcome (module doc), from the prediction record's payload."""
    dt = float(prediction["interval_s"])
    t_end = float(prediction["reading_timestamp"]) + dt
    return t_end - OUTCOME_SLACK * dt, t_end, t_end + OUTCOME_SLACK * dt


def measured_of(reading: EnergyReading) -> dict[str, float]:
    """The measured state of an outcome reading (module doc)."""
    m = reading.metrics
    racks = [v for k, v in m.items() if k.startswith("temp_")]
    return {
        "energy": float(reading.energy),
        "entropy": float(reading.entropy),
        "power": float(m["power"]),
        "temp": float(sum(racks) / len(racks)) if racks else float(m["temp"]),
    }


def _errors(ref: dict[str, float], other: dict[str, float], tol: float, ttol: float):
    """Per-key errors of `other` against `ref` (keys of `other`) and whether all are within
    the tolerance."""
    errors, ok = {}, True
    for k, v in other.items():
        if k == "temp":
            err = abs(ref["temp"] - v)
            ok &= err <= ttol
        else:
            err = abs(ref[k] - v) / max(abs(v), 1e-12)
            ok &= err <= tol
        errors[k] = err
    return errors, bool(ok)


def claim_check(
    claim: dict[str, float], measured: dict[str, float], tol: float, ttol: float
) -> tuple[dict[str, float], bool]:
    """(per claimed key: the claim's error relative to the measurement, whether the
    telemetry contradicts the claim: beyond `tol` relative, or `ttol` K on temp)."""
    errors, ok = _errors(claim, {k: measured[k] for k in claim}, tol, ttol)
    return errors, not ok


def pending_result(prediction_id: str, window: tuple[float, float, float], why: str):
    """What `EILOptimizer.prove` returns before the outcome is measured (nothing written)."""
    lo, t_end, hi = window
    return {
        "status": "pending",
        "valid": False,
        "pft_amount": 0.0,
        "duplicate": False,
        "prediction_id": prediction_id,
        "measurable_at": t_end,
        "outcome_window": [lo, hi],
        "retry_after_s": max(0.0, lo - time.time()),
        "reason": why,
    }


def verdict(prediction: dict[str, Any], actual: dict[str, float]) -> dict[str, Any]:
    """The proof payload of the measured outcome `actual` against a prediction record's
    payload (module doc)."""
    pred = prediction["predicted_state"]
    errors, ok = _errors(pred, actual, prediction["tolerance"], prediction["temp_tolerance"])
    accuracy = max(0.0, 1.0 - errors["energy"])
    savings = max(0.0, prediction["baseline_energy"] - actual["energy"]) / 3600.0 if ok else 0.0
    pft = accuracy * (1.0 + savings) if ok else 0.0
    return {
        "status": "proven" if ok else "invalid",
        "valid": bool(ok),
        "measured_state": actual,
        "errors": errors,
        "accuracy": accuracy,
        "verified_savings_kwh": savings,
        "pft_amount": round(pft, 6),
    }


def proof_result(rec: LedgerRecord, duplicate: bool) -> dict[str, Any]:
    """What `EILOptimizer.prove` returns for a proof record (nothing minted if duplicate)."""
    p = rec.payload
    return {
        "status": p["status"],
        "valid": p["valid"],
        "pft_amount": 0.0 if duplicate else p["pft_amount"],
        "minted_pft_amount": p["pft_amount"],
        "accuracy": p["accuracy"],
        "verified_savings": p["verified_savings_kwh"],
        "errors": p["errors"],
        "measured_state": p["measured_state"],
        "claimed_state": p.get("claimed_state"),
        "claim_contradicted": p.get("claim_contradicted", False),
        "duplicate": duplicate,
        "proof_seq": rec.seq,
        "proof_hash": rec.hash,
    }
