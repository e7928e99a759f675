"""Test configuration: strict numerics, a key fixture, project modules never skipped.

- The core's tests (`tests/core`, `tests/thermo`) run with
  `jax_numpy_rank_promotion = "raise"`: an implicit broadcast between arrays of different
  ranks is an error there (it hides shape bugs). The modelling and capsule code still
  relies on trailing-axis broadcasts and is not yet held to it.
- `jax_debug_nans` stays off (divergence handling is tested explicitly).
- Warnings are errors (pyproject's filterwarnings).
- The session has its own state directory (`IDF_STATE_DIR`: service keys, EIL database,
  anchors, jobs), never the user's; tests that need a clean one pass their own.
- XLA compiles for CPU at backend optimisation level 1 without the fusion emitters
  (`_FAST_COMPILE`, appended to `XLA_FLAGS` before JAX starts its backend, inherited by the
  tests' subprocesses). The tests' cost is compilation, not run time: this cuts the CPU time
  about 1.6x (tests/core/test_samplers_moments.py + tests/thermo/test_equilibrium.py:
  119 s -> 74 s of CPU). Level 0 would cut it 2.3x but changes float results (chunked and
  whole runs no longer agree bitwise; Thomson distances off by 1e-4), so it is not used.
  `IDF_TEST_XLA_OPT=1` keeps XLA's defaults (what users get).
"""

import os
import pathlib

_FAST_COMPILE = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
if os.environ.get("IDF_TEST_XLA_OPT") != "1":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = f"{_flags} {_FAST_COMPILE}".strip()

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them when it starts)
import pytest  # noqa: E402

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
