"""Test configuration: strict numerics, a key fixture, project modules never skipped.

- `jax_numpy_rank_promotion = "raise"`: an implicit broadcast of arrays of different
  ranks is an error (it hides shape bugs);
- `jax_debug_nans` stays off (divergence handling is tested explicitly);
- warnings are errors (pyproject's filterwarnings).
"""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(20261125)
