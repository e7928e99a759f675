"""Benchmark posteriors with known answers and the MAMS paper's b^2 metric.

Importable by the benchmarks (`benchmarks/bench_posteriors.py`) and by tests:

    from benchmarks.posteriors import get_target, TARGET_NAMES, b2_curves, cost_to_threshold
"""

from .metric import THRESHOLD, b2_curves, b2_of_samples, cost_to_threshold
from .targets import REFERENCE_DIR, TARGET_NAMES, Target, get_target, load_reference

__all__ = [
    "REFERENCE_DIR",
    "TARGET_NAMES",
    "THRESHOLD",
    "Target",
    "b2_curves",
    "b2_of_samples",
    "cost_to_threshold",
    "get_target",
    "load_reference",
]
