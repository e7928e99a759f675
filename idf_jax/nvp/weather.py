"""Real hourly weather from the TMY2 / TMY3 files shipped inside pvlib's wheel (never downloaded).

A TMY file holds one "typical meteorological year": 8760 hourly records stitched from
representative months of different years (NREL; TMY3: Wilcox & Marion 2008). We use the
dry-bulb air temperature (deg C) and the global horizontal irradiance GHI (W/m^2).
pvlib ships three: `TMY_FILES` (TMY3 Greensboro NC and Sand Point AK, TMY2 Miami FL).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

DEFAULT_TMY3 = "723170TYA.CSV"  # Greensboro Piedmont Triad Intl, NC (USAF 723170)
TMY_FILES = ("723170TYA.CSV", "703165TY.csv", "12839.tm2")  # the TMY files pvlib ships


class Weather(NamedTuple):
    """Hourly weather: `temp_air` (8760,) deg C, `ghi` (8760,) W/m^2, `hour_of_year` (8760,)."""

    temp_air: np.ndarray
    ghi: np.ndarray
    hour_of_year: np.ndarray
    station: str


def tmy3_path(name: str = DEFAULT_TMY3) -> str:
    """Path of a TMY2 / TMY3 file in the installed pvlib package (raises if pvlib is missing)."""
    try:
        import pvlib
    except ModuleNotFoundError as e:  # pragma: no cover - extra not installed
        raise ModuleNotFoundError(
            "real weather needs pvlib (install the 'nvp' extra: pip install idf-jax[nvp])"
        ) from e
    path = os.path.join(os.path.dirname(pvlib.__file__), "data", name)
    if not os.path.exists(path):
        kind = "TMY2" if name.lower().endswith(".tm2") else "TMY3"
        raise ValueError(f"no {kind} file {name!r} in pvlib's data folder {os.path.dirname(path)}")
    return path


@functools.lru_cache(maxsize=4)
def load_tmy3(name: str = DEFAULT_TMY3) -> Weather:
    """Read a TMY file shipped with pvlib (file order, hourly): TMY3 via
    `pvlib.iotools.read_tmy3`, TMY2 (``*.tm2``) via `read_tmy2`, whose dry-bulb column holds
    tenths of deg C (the TMY2 format) and is converted to deg C."""
    from pvlib.iotools import read_tmy2, read_tmy3

    path = tmy3_path(name)
    if name.lower().endswith(".tm2"):
        data, meta = read_tmy2(path)
        temp = data["DryBulb"].to_numpy(dtype=np.float64) / 10.0
        ghi = data["GHI"].to_numpy(dtype=np.float64)
        station = f"{meta.get('City', '').strip()} {meta.get('State', '')} ({meta.get('WBAN', '')})"
    else:
        data, meta = read_tmy3(path, map_variables=True)
        temp = data["temp_air"].to_numpy(dtype=np.float64)
        ghi = data["ghi"].to_numpy(dtype=np.float64)
        station = f"{meta.get('Name', '').strip(chr(34))} ({meta.get('USAF', '')})"
    if temp.shape != (8760,) or not (np.all(np.isfinite(temp)) and np.all(np.isfinite(ghi))):
        raise ValueError(f"TMY file {name!r} does not hold 8760 finite hourly records")
    temp.setflags(write=False)
    ghi.setflags(write=False)
    return Weather(temp, ghi, np.arange(8760, dtype=np.float64), station)
