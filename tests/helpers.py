"""Shared test helpers: tolerances derived from the effective sample size."""

import numpy as np

import idf_jax as idf


def mean_and_se(draws):
    """Mean over (chains, draws) and its Monte-Carlo standard error sd / sqrt(ESS), per component."""
    a = np.asarray(draws, dtype=np.float64)
    mean = a.mean(axis=(0, 1))
    sd = a.std(axis=(0, 1))
    ess = np.asarray(idf.ess(a))
    return mean, sd / np.sqrt(ess)


def assert_within(draws, expected, z=5.0, what="mean"):
    mean, se = mean_and_se(draws)
    err = np.abs(mean - np.asarray(expected))
    assert np.all(err < z * se), f"{what}: got {mean}, expected {expected}, |err|/se = {err / se}"


def tree_allclose(a, b, rtol=1e-6, atol=1e-6):
    """True when two PyTrees have the same structure and leaves allclose (NaN == NaN)."""
    import jax

    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    if ta != tb:
        return False
    return all(
        np.shape(x) == np.shape(y)
        and np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, equal_nan=True)
        for x, y in zip(la, lb)
    )


def count_traces(fn):
    """`fn` wrapped to count how often JAX traces it; returns (wrapped, counter list)."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapped, calls


def tilted_double_well(x):
    """A 2-D energy with two minima: the global one near x0 = -1.04 (E ~ -0.305), a local
    one near x0 = +0.96 (E ~ +0.294); `double_well_minimum()` gives the exact global."""
    return (x[0] ** 2 - 1.0) ** 2 + 0.3 * x[0] + x[1] ** 2


def double_well_minimum():
    """(E*, x0*) of `tilted_double_well`'s global minimum, from the cubic's roots."""
    roots = np.roots([4.0, 0.0, -4.0, 0.3])
    roots = roots[np.isreal(roots)].real
    e = (roots**2 - 1) ** 2 + 0.3 * roots
    return float(e.min()), float(roots[np.argmin(e)])
