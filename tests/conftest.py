"""Test configuration: strict numerics, a key fixture, project modules never skipped.

- The core's tests (`tests/core`, `tests/thermo`) run with
  `jax_numpy_rank_promotion = "raise"`: an implicit broadcast between arrays of different
  ranks is an error there (it hides shape bugs). The modelling and capsule code still
  relies on trailing-axis broadcasts and is not yet held to it.
- `jax_debug_nans` stays off (divergence handling is tested explicitly).
- Warnings are errors (pyproject's filterwarnings).
- The session has its own state directory (`IDF_STATE_DIR`: service keys, EIL database,
  anchors, jobs), never the user's; tests that need a clean one pass their own.
"""

import os
import pathlib

import jax
import pytest

_STRICT = ("core", "thermo")


@pytest.fixture(autouse=True, scope="session")
def _state_dir(tmp_path_factory):
    old = os.environ.get("IDF_STATE_DIR")
    os.environ["IDF_STATE_DIR"] = str(tmp_path_factory.mktemp("idf-state"))
    yield
    if old is None:
        os.environ.pop("IDF_STATE_DIR", None)
    else:
        os.environ["IDF_STATE_DIR"] = old


@pytest.fixture(autouse=True)
def _strict_rank_promotion(request):
    parts = pathlib.Path(str(request.node.fspath)).parts
    if any(p in parts for p in _STRICT):
        with jax.numpy_rank_promotion("raise"):
            yield
    else:
        yield


@pytest.fixture
def key():
    return jax.random.key(20261125)
