"""The harness of benchmarks/bench_posteriors.py: in-scan b2, gradient counts, the method registry."""

import pathlib
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import idf_jax as idf  # noqa: E402
from benchmarks import bench_posteriors as bench  # noqa: E402
from benchmarks import posterior_methods as pm  # noqa: E402
from benchmarks.posteriors import b2_of_samples, get_target  # noqa: E402


class _State(NamedTuple):
    position: jax.Array


def _exact_banana_method():
    """A 'sampler' drawing independent exact banana draws; 3 gradients a step."""

    def draw(k):
        z = jax.random.normal(k, (2,))
        x0 = 10.0 * z[0]
        return jnp.stack([x0, 0.03 * (x0**2 - 100.0) + z[1]])

    def step(target, params, keys, states):
        del target, params, states
        return _State(jax.vmap(draw)(keys)), jnp.full((keys.shape[0],), 3.0, jnp.float32)

    def no_tune(*args) -> pm.Tuned:
        raise AssertionError("the exact sampler is not tuned")

    return pm.Method("exact", "test", no_tune, step, lambda s: s.position, ""), draw


@pytest.mark.parametrize("pooled", [False, True])
def test_in_scan_b2_matches_the_metric_on_the_same_draws(pooled, key):
    target = get_target("banana")
    method, draw = _exact_banana_method()
    chains, steps = 8, 600
    run = bench._sample_scan(method, target, steps, pooled)
    truth = jnp.asarray(target.second_moment, jnp.float32)
    var = jnp.asarray(target.var_second_moment, jnp.float32)
    states = _State(jnp.zeros((chains, 2)))
    b2max, b2avg, grads = jax.jit(run)(None, states, key, truth, var)
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(key, i), chains))(
        jnp.arange(steps)
    )
    x = np.asarray(jax.vmap(jax.vmap(draw))(keys)).transpose(1, 0, 2)  # (chains, steps, 2)
    want_max, want_avg = b2_of_samples(
        x, target.second_moment, target.var_second_moment, per_chain=not pooled
    )
    np.testing.assert_allclose(np.asarray(b2max), want_max, rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(np.asarray(b2avg), want_avg, rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grads), 3.0 * np.arange(1, steps + 1))


def test_registry_has_the_peers_and_idf_methods_and_picks_up_new_ones(monkeypatch):
    methods = pm.available_methods()
    for name in ("blackjax_nuts", "blackjax_mclmc", "blackjax_mams", "idf_mala", "idf_hmc"):
        assert name in methods
    if not hasattr(idf, "nuts"):
        monkeypatch.setattr(
            idf, "nuts", lambda e, step_size: idf.hmc(e, step_size, 3), raising=False
        )
        assert "idf_nuts" in pm.available_methods()


def test_info_grads_reads_the_count_or_names_the_problem():
    class Info(NamedTuple):
        acceptance_rate: jax.Array
        num_integration_steps: jax.Array

    assert float(pm.info_grads(Info(jnp.ones(()), jnp.asarray(7)))) == 7.0
    with pytest.raises(ValueError, match="num_grad_evals"):
        pm.info_grads(object())


def test_one_method_end_to_end_on_the_banana(key):
    target = get_target("banana")
    r = bench.run_kernel_method(
        pm.available_methods()["idf_mala"],
        target,
        8,
        key,
        budget=2000,
        tune_steps=100,
        pooled=False,
    )
    # The tuner's own count (its step-size search probes included) + the initial gradient.
    k_init, k_tune, _ = jax.random.split(key, 3)
    x0 = target.init(k_init, 8, jnp.float32)
    res = idf.adapt_run(idf.mala(target.energy, 0.1), k_tune, x0, 100)
    spent = float(res.num_grad_evals) / 8 + 1.0
    assert 101.0 <= spent <= 141.0  # 100 steps, at most ~30 search probes, x0's gradient
    assert r["num_steps"] == 2000 and r["tuning_grads"] == pytest.approx(spent)
    g = r["curve"]["grads"]
    assert g[0] == pytest.approx(spent + 1.0) and g[-1] == pytest.approx(spent + 2000.0)
    assert r["wall_s"] > 0 and np.isfinite(r["final_b2max"])
    assert r["grads_to_b2max"] is None or spent + 1 <= r["grads_to_b2max"] <= spent + 2000


def test_sample_tuned_rows_read_the_trace_counts(monkeypatch, key):
    """A stand-in `idf.sample_tuned` (MALA, counts in `Trace.stats`) goes through the harness."""

    def fake_sample_tuned(energy_fn, key, x0_batch, num_draws, method="auto"):
        del method
        trace = idf.sample(idf.mala(energy_fn, 0.5), key, x0_batch, num_draws)
        n = x0_batch.shape[0]
        stats = dict(trace.stats)
        stats["num_grad_evals"] = jnp.ones((n,))
        stats["tuning_grad_evals"] = jnp.full((n,), 10.0)
        return trace._replace(stats=stats)

    banana = get_target("banana")  # one energy function: the runs share compiled code
    monkeypatch.setattr(idf, "sample_tuned", fake_sample_tuned, raising=False)
    r = bench.run_sample_tuned("auto", banana, 8, key, budget=800, pooled=False)
    assert r["num_steps"] == 200 and r["tuning_grads"] == 10.0
    assert r["curve"]["grads"][0] == 11.0 and r["curve"]["grads"][-1] == 210.0

    def uncounted(energy_fn, key, x0_batch, num_draws, method="auto"):
        return idf.sample(idf.mala(energy_fn, 0.5), key, x0_batch, num_draws)

    monkeypatch.setattr(idf, "sample_tuned", uncounted, raising=False)
    with pytest.raises(ValueError, match="no gradient count"):
        bench.run_sample_tuned("auto", banana, 8, key, budget=800, pooled=False)
