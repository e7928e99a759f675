"""The lever-bound table of experiments/results/eil.md (issue 19): per setting, `fixed`,
`rule-tuned` and the no-foresight bound `lever-bound` (`_baselines.LEVER_BOUND_DOC`, and the
tighter LP `LEVER_BOUND_LP_DOC`), with the other controllers' rows of earlier runs where they
exist (`eil_mpc_cal_*`, `eil_lever_*`, `eil_mpc_calt_*` JSON).

The rows of `fixed` and `rule-tuned` come from
``eil_closed_loop.py --controllers fixed,rule-tuned,lever-bound --json eil_bound_<name>.json``;
`--recompute` recomputes the lever-bound row of each file with the current code (it is
deterministic and cheap: no closed loop) and rewrites the file.

  PYTHONPATH=. python experiments/eil_bound_table.py [--recompute]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eil_closed_loop as E  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# (name, station, start day, demand seed, new: never run before this table)
SETTINGS = (
    ("dev", "723170TYA.CSV", 7, 7, False),
    ("B", "723170TYA.CSV", 100, 11, False),
    ("D", "723170TYA.CSV", 280, 21, False),
    ("E", "703165TY.csv", 60, 13, False),
    ("F", "12839.tm2", 200, 17, False),
    ("G", "12839.tm2", 20, 31, False),
    ("H", "723170TYA.CSV", 160, 29, False),
    ("I", "703165TY.csv", 230, 41, False),
    ("J", "12839.tm2", 110, 53, True),
    ("K", "703165TY.csv", 330, 61, True),
    ("L", "723170TYA.CSV", 240, 67, True),
    ("M", "12839.tm2", 300, 73, True),
    ("N", "723170TYA.CSV", 50, 79, True),
    ("O", "703165TY.csv", 140, 83, True),
)


def _load(path):
    if not os.path.exists(path):
        return {}
    return {r["controller"]: r for r in json.load(open(path))}


def _pts(row, base):
    return None if row is None else 100.0 * (1.0 - row["energy_kwh"] / base["energy_kwh"])


def recompute(name, station, day, seed):
    path = os.path.join(RESULTS, f"eil_bound_{name}.json")
    rows = json.load(open(path))
    (new,) = E.run_setting(station, day, 7, seed, ["lever-bound"])
    base = next(r for r in rows if r["controller"] == "fixed")
    E.add_savings(new, base)
    rows = [r for r in rows if r["controller"] != "lever-bound"] + [new]
    with open(path + ".tmp", "w") as f:
        json.dump(rows, f, indent=1, default=float)
    os.replace(path + ".tmp", path)


def table() -> str:
    head = (
        "| setting | station, day, seed | fixed (kWh) | rule-tuned | bound (analytic) | "
        "bound (LP) | bound - rule | bound, fractional servers | state-oracle | lever-oracle "
        "| eil-mpc-cal | eil-mpc-cal-t | headroom h | load avg |\n" + "|---" * 14 + "|"
    )
    lines = [head]
    for name, st, day, seed, new in SETTINGS:
        b = _load(os.path.join(RESULTS, f"eil_bound_{name}.json"))
        if "lever-bound" not in b:
            continue
        base, rule, lb = b["fixed"], b["rule-tuned"], b["lever-bound"]
        other = {
            **_load(os.path.join(RESULTS, f"eil_mpc_cal_{name}_so.json")),
            **_load(os.path.join(RESULTS, f"eil_lever_{name}.json")),
            **_load(os.path.join(RESULTS, f"eil_mpc_cal_{name}.json")),
            **_load(os.path.join(RESULTS, f"eil_mpc_calt_{name}.json")),
        }
        r_pts = _pts(rule, base)

        def cell(ctrl, other=other, base=base, r_pts=r_pts):
            row = other.get(ctrl)
            if row is None or "fixed" not in other:
                return "—"
            # each file's own fixed row (the same plant and keys: identical energies)
            p = _pts(row, other["fixed"] if ctrl not in ("rule-tuned",) else base)
            v = "" if row.get("violations", 0) == 0 else f", {row['violations']} viol."
            return f"{p:.1f} ({p - r_pts:+.1f}{v})"

        bound = 100 * lb["saved_vs_fixed"]
        lines.append(
            f"| {name}{' (new)' if new else ''} | {st} d{day} s{seed} | {base['energy_kwh']:.0f} | "
            f"{r_pts:.1f} | {100 * lb['saved_vs_fixed_analytic']:.1f} | "
            f"{100 * lb['saved_vs_fixed_lp']:.1f} | **{bound - r_pts:+.1f}** | "
            f"{100 * lb['saved_vs_fixed_continuous']:.1f} | {cell('state-oracle')} | "
            f"{cell('lever-oracle')} | {cell('eil-mpc-cal')} | {cell('eil-mpc-cal-t')} | "
            f"{lb['tuned']['headroom']:.4f} | {'/'.join(str(x) for x in rule['load_avg'])} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated setting names")
    a = ap.parse_args(argv)
    only = None if a.only is None else set(a.only.split(","))
    if a.recompute:
        for name, st, day, seed, _ in SETTINGS:
            if (only is None or name in only) and os.path.exists(
                os.path.join(RESULTS, f"eil_bound_{name}.json")
            ):
                recompute(name, st, day, seed)
                print("recomputed", name, flush=True)
    print(table())


if __name__ == "__main__":
    main()
