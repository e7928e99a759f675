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
