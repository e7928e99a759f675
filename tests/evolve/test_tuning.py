"""Self-tuning: the configuration space follows the installed signature; the tuners."""

import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.evolve import tuning

ev = idf.evolve


class _Res(NamedTuple):
    num_reached: int
    best_energy: float


def fake_equilibrium(
    energy_fn,
    key,
    x0_batch,
    *,
    num_steps,
    target_acceptance=0.57,
    adapt_rate=0.05,
    constraints=None,
    project=None,
    target=None,
    target_tol=1e-3,
    relax_steps=500,
    prerelax_steps=100,
):
    """A stand-in with a known answer: chains succeed only when adapt_rate < 0.02."""
    chains = x0_batch.shape[0]
    ok = adapt_rate < 0.02
    return _Res(chains // 2 if ok else 0, target if ok else target + 1.0)


def test_space_follows_the_signature():
    sp = ev.equilibrium_space(fake_equilibrium)
    assert set(sp) == {"num_steps", "target_acceptance", "adapt_rate"}
    real = ev.equilibrium_space()
    accepted = set(inspect.signature(idf.sample_equilibrium).parameters)
    assert set(real) <= accepted and "num_steps" in real
    assert ("method" in real) == ("method" in accepted)
    sp = ev.equilibrium_space(
        fake_equilibrium, include=["adapt_rate"], overrides={"num_steps": ev.Choice([100, 200])}
    )
    assert set(sp) == {"adapt_rate", "num_steps"}
    with pytest.raises(ArgumentError) as e:
        ev.equilibrium_space(fake_equilibrium, overrides={"method": ev.Choice(["x"])})
    assert e.value.argument == "overrides"


def test_fitness_is_cost_per_success():
    task = ev.EquilibriumTask(
        "toy", lambda x: jnp.sum(x**2), lambda k, c: jnp.zeros((c, 2)), target=-1.0, chains=4
    )
    f, det = tuning.equilibrium_fitness(
        {"num_steps": 100, "adapt_rate": 0.01}, [task], [0, 1], fn=fake_equilibrium
    )
    evals = 2 * 4 * (100 + 100 + 500)
    assert det["successes"] == 4 and det["evaluations"] == evals
    assert f == pytest.approx(np.log10(evals / 4))
    f_fail, det = tuning.equilibrium_fitness({"num_steps": 100}, [task], [0], fn=fake_equilibrium)
    assert det["successes"] == 0 and f_fail > np.log10(4 * 700)  # failure costs more


def test_tune_equilibrium_finds_the_known_answer():
    task = ev.EquilibriumTask(
        "toy", lambda x: jnp.sum(x**2), lambda k, c: jnp.zeros((c, 2)), target=-1.0, chains=4
    )
    res, report = ev.tune_equilibrium(
        [task],
        jax.random.key(0),
        seeds=[0],
        fn=fake_equilibrium,
        population_size=8,
        num_generations=8,
    )
    assert report["baseline"]["successes"] == 0  # the defaults (adapt_rate 0.05) fail
    assert report["best_config"]["adapt_rate"] < 0.02 and report["best"]["successes"] > 0
    assert report["best_fitness"] < report["baseline_fitness"]
    assert not res.traceable


def test_jax_ess_matches_the_reference_estimator():
    phi, c, n = 0.8, 4, 1000
    e = np.random.default_rng(1).normal(size=(c, n, 2))
    x = np.zeros_like(e)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    ess = jax.jit(tuning.ess_per_chain_jax)
    ours = np.asarray(ess(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(ours, idf.ess(x), rtol=0.15)  # idf.ess: split, rank-normalised
    np.testing.assert_allclose(ours, c * n * (1 - phi) / (1 + phi), rtol=0.25)
    # chains stuck in different places are few effective samples
    stuck = np.arange(c)[:, None, None] + 1e-3 * np.cumsum(e, axis=1)
    assert np.all(np.asarray(ess(jnp.asarray(stuck, jnp.float32))) < 2 * c)


def _ess_reference(x):
    """The same estimator in NumPy, lag by lag (Geyer's initial positive then monotone
    sequence with an explicit loop): float64, no FFT."""
    c, n, dim = x.shape
    out = np.empty(dim)
    for j in range(dim):
        y = x[:, :, j] - x[:, :, j].mean(axis=1, keepdims=True)
        acov = np.array([[np.dot(y[i, : n - t], y[i, t:]) / n for t in range(n)] for i in range(c)])
        w = np.mean(acov[:, 0] * n / (n - 1))
        var_plus = (n - 1) / n * w + np.var(x[:, :, j].mean(axis=1), ddof=1)
        rho = 1.0 - (w - acov.mean(axis=0)) / var_plus
        total, low = 0.0, np.inf
        for t in range(n // 2):
            pair = rho[2 * t] + rho[2 * t + 1]
            if pair <= 0:
                break
            low = min(low, pair)
            total += low
        out[j] = c * n / max(-1.0 + 2.0 * total, 1.0 / np.log10(max(c * n, 10.0)))
    return out


def test_jax_ess_is_the_initial_monotone_sequence_estimator():
    # AR(1) components from white noise to phi = 0.99 (the pair sums turn negative early
    # for the first, late for the last), 6 chains of 300 draws
    rng = np.random.default_rng(3)
    phi = np.array([0.0, 0.5, 0.9, 0.99])
    e = rng.normal(size=(6, 300, 4))
    x = np.zeros_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, 300):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    ours = np.asarray(jax.jit(tuning.ess_per_chain_jax)(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(ours, _ess_reference(x), rtol=2e-3)


@pytest.mark.slow
def test_tune_sampler_mala_on_a_gaussian():
    scales = jnp.array([0.5, 1.0, 2.0])
    x0 = jax.random.normal(jax.random.key(0), (8, 3))
    res = ev.tune_sampler(
        lambda x: 0.5 * jnp.sum((x / scales) ** 2),
        x0,
        jax.random.key(1),
        num_steps=300,
        burn_in=50,
        num_generations=6,
    )
    assert res.traceable
    assert 0.05 < res.best_params["step_size"] < 3.0


class _HitRes(NamedTuple):
    num_reached: int
    best_energy: float
    num_evaluations: int
    hit_evaluations: int


def test_ert_metric_counts_evaluations_until_the_first_hit():
    """ERT = evaluations spent over all runs (until the hit where there is one) per run
    that reached the record; runs are asked to stop at the target."""
    seen = {}

    def fake(energy_fn, key, x0_batch, *, num_steps, adapt_rate=0.05, constraints=None,
             project=None, target=None, target_tol=1e-3, stop_at_target=False):  # fmt: skip
        seen["stop"] = stop_at_target
        seed_ok = int(jax.random.randint(key, (), 0, 2)) == 1 or adapt_rate < 0.02
        if seed_ok:
            return _HitRes(1, target, 5000, 1200)
        return _HitRes(0, target + 1.0, 5000, -1)

    task = ev.EquilibriumTask(
        "toy", lambda x: jnp.sum(x**2), lambda k, c: jnp.zeros((c, 2)), target=-1.0, chains=4
    )
    f, det = tuning.equilibrium_fitness(
        {"num_steps": 100, "adapt_rate": 0.01}, [task], [0, 1, 2], fn=fake, metric="ert"
    )
    assert seen["stop"] is True
    assert det["runs_reached"] == 3 and det["seed_runs"] == 3
    assert det["ert"] == pytest.approx(1200.0) and f == pytest.approx(np.log10(1200.0))
    f, det = tuning.equilibrium_fitness(
        {"num_steps": 100, "adapt_rate": 0.1}, [task], list(range(6)), fn=fake, metric="ert"
    )
    k = det["runs_reached"]
    assert 0 < k < 6
    assert det["ert"] == pytest.approx((k * 1200 + (6 - k) * 5000) / k)
    with pytest.raises(ArgumentError) as e:
        tuning.equilibrium_fitness({"num_steps": 1}, [task], [0], fn=fake, metric="bogus")
    assert e.value.argument == "metric"


def test_ert_mean_weighs_every_task_evenly_with_its_own_budget():
    """metric="ert_mean": mean over tasks of each task's log10(ERT), each task run with
    its own `num_steps`; a task none of whose runs reached the record costs twice what
    it spent plus the gap term; `on_evaluation` sees every configuration."""
    budgets = []

    def fake(energy_fn, key, x0_batch, *, num_steps, adapt_rate=0.05, constraints=None,
             project=None, target=None, target_tol=1e-3, stop_at_target=False):  # fmt: skip
        budgets.append(num_steps)
        if num_steps == 10:  # the small task: always hit after 100 evaluations
            return _HitRes(1, target, 500, 100)
        if adapt_rate < 0.02:  # the large task: hit after 10 000 only with a small rate
            return _HitRes(1, target, 40000, 10000)
        return _HitRes(0, target + 0.5, 40000, -1)

    def task(name, steps):
        return ev.EquilibriumTask(
            name, lambda x: jnp.sum(x**2), lambda k, c: jnp.zeros((c, 2)), target=-1.0,
            chains=4, num_steps=steps,
        )  # fmt: skip

    tasks = [task("small", 10), task("large", 1000)]
    f, det = tuning.equilibrium_fitness(
        {"num_steps": 7, "adapt_rate": 0.01}, tasks, [0, 1], fn=fake, metric="ert_mean"
    )
    assert budgets == [10, 10, 1000, 1000]  # each task's own budget, not the config's
    assert det["tasks"]["small"]["ert"] == pytest.approx(100.0)
    assert det["tasks"]["large"]["ert"] == pytest.approx(10000.0)
    assert f == pytest.approx((2.0 + 4.0) / 2)  # geometric mean ERT 1000; pooled: 5050
    f_pool, _ = tuning.equilibrium_fitness(
        {"adapt_rate": 0.01}, tasks, [0, 1], fn=fake, metric="ert"
    )
    assert f_pool == pytest.approx(np.log10(20200 / 4))
    f_fail, det = tuning.equilibrium_fitness(
        {"adapt_rate": 0.1}, tasks, [0, 1], fn=fake, metric="ert_mean"
    )
    large = det["tasks"]["large"]
    assert large["runs_reached"] == 0 and large["ert"] == pytest.approx(80000 / 0.5)
    assert large["fitness"] == pytest.approx(np.log10(160000) + 0.5)
    assert f_fail == pytest.approx((2.0 + large["fitness"]) / 2) and f_fail > f
    seen = []
    res, report = ev.tune_equilibrium(
        tasks,
        jax.random.key(0),
        seeds=[0],
        space={"adapt_rate": ev.Real(0.005, 0.5, log=True)},
        metric="ert_mean",
        fn=fake,
        population_size=6,
        num_generations=4,
        on_evaluation=lambda fit, cfg, d: seen.append((fit, cfg)),
    )
    assert len(seen) == 1 + len(report["evaluated"]) == 1 + res.num_evaluations
    assert report["best_config"]["adapt_rate"] < 0.02
    assert report["best_fitness"] == pytest.approx(3.0)


def test_task_moves_reach_every_basin_hopping_run_and_no_annealing_run():
    """`EquilibriumTask.moves` (a capsule's moves) is passed to every run whose method is
    basin hopping, as `idf equilibrium` passes `Capsule.moves`, and left out where the
    configuration anneals; `fixed` moves win; a function without `moves` is an error."""
    seen = []

    def fake(energy_fn, key, x0_batch, *, num_steps, method="auto", moves=None,
             schedule=None, constraints=None, project=None, target=0.0, target_tol=1e-3,
             stop_at_target=False):  # fmt: skip
        if method == "anneal" and moves is not None:
            raise ArgumentError("moves", "annealing takes no moves")
        seen.append(moves)
        return _HitRes(1, target, 100, 50)

    def move(key, x, scale):
        return x

    def other(key, x, scale):
        return -x

    task = ev.EquilibriumTask(
        "toy", lambda x: jnp.sum(x**2), lambda k, c: jnp.zeros((c, 2)), target=-1.0,
        chains=4, moves=move,
    )  # fmt: skip
    for cfg in ({}, {"method": "auto"}, {"method": "parallel_tempering"}, {"method": "population"}):
        seen.clear()
        tuning.equilibrium_fitness({"num_steps": 5, **cfg}, [task], [0, 1], fn=fake, metric="ert")
        assert seen == [move, move]
    for cfg in ({"method": "anneal"}, {"method": "auto", "schedule": 1.0}):
        seen.clear()
        tuning.equilibrium_fitness({"num_steps": 5, **cfg}, [task], [0], fn=fake, metric="ert")
        assert seen == [None]
    seen.clear()
    tuning.equilibrium_fitness({"num_steps": 5}, [task], [0], fn=fake, fixed={"moves": other})
    assert seen == [other]
    with pytest.raises(ArgumentError) as e:
        tuning.equilibrium_fitness({"num_steps": 100}, [task], [0], fn=fake_equilibrium)
    assert e.value.argument == "tasks"


def test_task_moves_reach_a_real_search_as_passing_them_by_hand_does():
    """On a real `sample_equilibrium` a task's moves are the capsule's moves: the fitness
    run spends exactly what a direct call with `moves=capsule.moves` spends."""
    from capsules import plasma

    cap = plasma.thomson(5)
    task = ev.EquilibriumTask(
        "thomson5", cap.energy_fn, cap.init, plasma.THOMSON_MINIMA[5], project=cap.project,
        chains=4, num_steps=300, moves=cap.moves,
    )  # fmt: skip
    _, det = tuning.equilibrium_fitness({"replicas": 4}, [task], [3], metric="ert")
    k_init, k_run = jax.random.split(jax.random.key(3))
    res = idf.sample_equilibrium(
        cap.energy_fn, k_run, cap.init(k_init, 4), num_steps=300, replicas=4,
        project=cap.project, target=task.target, stop_at_target=True, moves=cap.moves,
    )  # fmt: skip
    reached = int(res.num_reached) > 0
    assert det["runs_reached"] == int(reached)
    assert det["spent"] == int(res.hit_evaluations if reached else res.num_evaluations)
