"""Warm-up of many chains at once: `idf.adapt(sampler, key, x0_batch, num_steps, method=...)`.

Methods (one module each): `"window"` (Stan's windowed step size + diagonal mass, the
default; `window.py`), `"window_dense"` (the same with a dense mass), `"chees"` (ChEES
trajectory length + step size for jittered HMC; `chees.py`), `"meads"` (MEADS for
generalised HMC; `meads.py`), `"mclmc"` and `"mams"` (the microcanonical tuners;
`microcanonical.py`). Each runs as one compiled warm-up under `jax.jit` / `jax.vmap`
and returns an `AdaptationResult` of arrays with its tuning cost in gradient
evaluations.
"""

from .api import METHODS as METHODS
from .api import adapt as adapt
from .api import adapt_run as adapt_run
from .window import AdaptationResult as AdaptationResult
from .window import _windows as _windows
from .window import default_target_acceptance as default_target_acceptance

__all__ = ["METHODS", "AdaptationResult", "adapt", "adapt_run", "default_target_acceptance"]
