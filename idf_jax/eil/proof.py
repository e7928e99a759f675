"""Prove: a prediction checked against the outcome, and the proof-of-prediction (PFT) amount.

The stated tolerance: relative error <= ``tolerance`` on ``energy``, ``entropy`` and ``power``
where given, and |error| <= ``temp_tolerance`` K on ``temp``.
``accuracy = 1 - |E_pred - E_actual| / E_actual``; verified savings
``= max(0, E_noop_pred - E_actual)`` (kWh), where ``E_noop_pred`` is the forecast, recorded at
decision time, for keeping the previous operating point. When valid:

    pft_amount = accuracy * (1 + verified_savings_kwh)

(1 PFT for an exact prediction plus 1 PFT per verified kWh saved, scaled by accuracy);
otherwise 0.
"""

from __future__ import annotations

from typing import Any

from .goals import as_float
from .ledger import LedgerRecord

__all__ = ["ACTUAL_KEYS", "FORMULA", "actual_of", "verdict", "proof_result"]

ACTUAL_KEYS = ("energy", "entropy", "power", "temp")
FORMULA = "pft = accuracy * (1 + verified_savings_kwh) if valid else 0"


def actual_of(actual_state: Any) -> dict[str, float]:
    """The validated outcome: a dict with 'energy' (kJ, > 0) and optionally 'entropy'
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


def verdict(prediction: dict[str, Any], actual: dict[str, float]) -> dict[str, Any]:
    """The proof payload of `actual` against a prediction record's payload (module doc)."""
    pred = prediction["predicted_state"]
    tol, ttol = prediction["tolerance"], prediction["temp_tolerance"]
    errors, ok = {}, True
    for k, v in actual.items():
        if k == "temp":
            err = abs(pred["temp"] - v)
            ok &= err <= ttol
        else:
            err = abs(pred[k] - v) / max(abs(v), 1e-12)
            ok &= err <= tol
        errors[k] = err
    accuracy = max(0.0, 1.0 - errors["energy"])
    savings = max(0.0, prediction["baseline_energy"] - actual["energy"]) / 3600.0 if ok else 0.0
    pft = accuracy * (1.0 + savings) if ok else 0.0
    return {
        "valid": bool(ok),
        "actual_state": actual,
        "errors": errors,
        "accuracy": accuracy,
        "verified_savings_kwh": savings,
        "pft_amount": round(pft, 6),
    }


def proof_result(rec: LedgerRecord, duplicate: bool) -> dict[str, Any]:
    """What `EILOptimizer.prove` returns for a proof record (nothing minted if duplicate)."""
    p = rec.payload
    return {
        "valid": p["valid"],
        "pft_amount": 0.0 if duplicate else p["pft_amount"],
        "minted_pft_amount": p["pft_amount"],
        "accuracy": p["accuracy"],
        "verified_savings": p["verified_savings_kwh"],
        "errors": p["errors"],
        "duplicate": duplicate,
        "proof_seq": rec.seq,
        "proof_hash": rec.hash,
    }
