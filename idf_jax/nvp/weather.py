"""Real hourly weather from the TMY3 files shipped inside pvlib's wheel (never downloaded).

A TMY3 file holds one "typical meteorological year": 8760 hourly records stitched from
representative months of different years (NREL, Wilcox & Marion 2008). We use the
dry-bulb air temperature (deg C) and the global horizontal irradiance GHI (W/m^2).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

DEFAULT_TMY3 = "723170TYA.CSV"  # Greensboro Piedmont Triad Intl, NC (USAF 723170)


class Weather(NamedTuple):
    """Hourly weather: `temp_air` (8760,) deg C, `ghi` (8760,) W/m^2, `hour_of_year` (8760,)."""

    temp_air: np.ndarray
    ghi: np.ndarray
    hour_of_year: np.ndarray
    station: str


def tmy3_path(name: str = DEFAULT_TMY3) -> str:
    """Path of a TMY3 file inside the installed pvlib package (raises if pvlib is missing)."""
    try:
        import pvlib
    except ModuleNotFoundError as e:  # pragma: no cover - extra not installed
        raise ModuleNotFoundError(
            "real weather needs pvlib (install the 'nvp' extra: pip install idf-jax[nvp])"
        ) from e
    path = os.path.join(os.path.dirname(pvlib.__file__), "data", name)
    if not os.path.exists(path):
        raise ValueError(f"no TMY3 file {name!r} in pvlib's data folder {os.path.dirname(path)}")
    return path


@functools.lru_cache(maxsize=4)
def load_tmy3(name: str = DEFAULT_TMY3) -> Weather:
    """Read a TMY3 file shipped with pvlib via `pvlib.iotools.read_tmy3` (file order, hourly)."""
    from pvlib.iotools import read_tmy3

    data, meta = read_tmy3(tmy3_path(name), map_variables=True)
    temp = data["temp_air"].to_numpy(dtype=np.float64)
    ghi = data["ghi"].to_numpy(dtype=np.float64)
    if temp.shape != (8760,) or not (np.all(np.isfinite(temp)) and np.all(np.isfinite(ghi))):
        raise ValueError(f"TMY3 file {name!r} does not hold 8760 finite hourly records")
    station = f"{meta.get('Name', '').strip(chr(34))} ({meta.get('USAF', '')})"
    temp.setflags(write=False)
    ghi.setflags(write=False)
    return Weather(temp, ghi, np.arange(8760, dtype=np.float64), station)
