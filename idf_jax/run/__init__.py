"""The driver: `sample()` runs many chains of a sampler (vmap over chains, scan over steps).

`_driver` holds the loop and sharding, `_checkpoint` the atomic save / exact resume,
`_stats` the per-chain summaries carried through the scan, `_desync` the desynchronised
NUTS driver.
"""

from ._desync import sample_nuts_desync as sample_nuts_desync
from ._driver import Trace as Trace
from ._driver import sample as sample
from ._stats import ENERGY_ERROR_BIN_EDGES as ENERGY_ERROR_BIN_EDGES

__all__ = ["ENERGY_ERROR_BIN_EDGES", "Trace", "sample", "sample_nuts_desync"]
