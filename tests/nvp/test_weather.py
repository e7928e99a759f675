"""The TMY files pvlib ships load as 8760 hourly deg C / W m^-2 records (TMY2 tenths converted)."""

import numpy as np
import pytest

from idf_jax.nvp.weather import TMY_FILES, load_tmy3


@pytest.mark.parametrize(
    "name, mean_c", [("723170TYA.CSV", 14.4), ("703165TY.csv", 4.4), ("12839.tm2", 24.3)]
)
def test_tmy_files_load_in_deg_c(name, mean_c):
    assert name in TMY_FILES
    w = load_tmy3(name)
    assert w.temp_air.shape == w.ghi.shape == (8760,)
    assert np.mean(w.temp_air) == pytest.approx(mean_c, abs=0.1)
    assert w.ghi.min() >= 0 and 800 < w.ghi.max() < 1200


def test_unknown_file_is_refused():
    with pytest.raises(ValueError, match="no TMY2 file"):
        load_tmy3("nowhere.tm2")
