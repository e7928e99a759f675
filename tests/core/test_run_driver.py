"""The sample() driver: chunking, checkpoints, divergence, sharding, errors, grad."""

import os
import signal
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def iso(x):
    return 0.5 * jnp.sum(x**2)


@pytest.fixture
def x0(key):
    return jax.random.normal(key, (8, 3))


def test_shapes_thinning_and_burn_in(key, x0):
    tr = idf.sample(idf.mala(iso, 0.3), key, x0, 120, thin=4, burn_in=20)
    assert tr.positions.shape == (8, 25, 3) and tr.energies.shape == (8, 25)
    np.testing.assert_allclose(
        np.asarray(tr.energies), 0.5 * np.sum(np.asarray(tr.positions) ** 2, -1), rtol=1e-5
    )
    assert np.all(np.asarray(tr.stats["num_active_steps"]) == 100)
    # the last draw is the final state
    np.testing.assert_array_equal(
        np.asarray(tr.positions[:, -1]), np.asarray(tr.final_state.position)
    )


def test_thin_one_draw_equals_manual_loop(key, x0):
    s = idf.ula(iso, 0.1)
    tr = idf.sample(s, key, x0, 5)
    chain_keys = jax.random.split(key, 8)
    state = jax.vmap(s.init)(x0)
    for i in range(5):
        state, _ = jax.vmap(s.step)(jax.vmap(jax.random.fold_in, (0, None))(chain_keys, i), state)
        np.testing.assert_allclose(
            np.asarray(tr.positions[:, i]), np.asarray(state.position), rtol=1e-5, atol=1e-6
        )


def test_progress_and_chunks_give_identical_results(key, x0):
    s = idf.hmc(iso, 0.2, 3)  # the driver's invariance does not depend on the sampler
    a = idf.sample(s, key, x0, 300, thin=3, burn_in=30)
    b = idf.sample(s, key, x0, 300, thin=3, burn_in=30, progress=True)
    c = idf.sample(s, key, x0, 300, thin=3, burn_in=30, chunk_draws=7)
    for other in (b, c):
        chex.assert_trees_all_equal(a.positions, other.positions)
        chex.assert_trees_all_equal(a.energies, other.energies)
        chex.assert_trees_all_close(a.stats, other.stats, rtol=1e-6)


def test_callback_reports_progress(key, x0):
    seen = []
    idf.sample(
        idf.ula(iso, 0.1),
        key,
        x0,
        100,
        thin=2,
        burn_in=10,
        callback=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (100, 100) and all(b[0] > a[0] for a, b in zip(seen, seen[1:]))


def test_divergent_chain_is_flagged_frozen_and_isolated(key):
    def E(x):  # NaN beyond |x| > 20: a blow-up region
        return jnp.where(jnp.abs(x[0]) > 20.0, jnp.nan, 0.5 * jnp.sum(x**2))

    x0 = jnp.zeros((6, 2)).at[3].set(jnp.array([25.0, 0.0]))
    tr = idf.sample(idf.ula(E, 0.1), key, x0, 50)
    div = np.asarray(tr.stats["diverged"])
    assert div.tolist() == [False, False, False, True, False, False]
    assert np.all(np.isfinite(np.asarray(tr.positions)[~div]))
    # the frozen chain stays where it was; others are unaffected by its presence
    np.testing.assert_array_equal(np.asarray(tr.final_state.position[3]), [25.0, 0.0])
    clean = idf.sample(idf.ula(E, 0.1), key, x0.at[3].set(0.0), 50)
    np.testing.assert_array_equal(np.asarray(tr.positions)[~div], np.asarray(clean.positions)[~div])


def test_infinite_energy_is_a_rejection_not_a_divergence(key):
    def E(x):  # hard wall at x > 1
        return jnp.where(x[0] > 1.0, jnp.inf, 0.5 * jnp.sum(x**2))

    tr = idf.sample(idf.mala(E, 0.5), key, jnp.zeros((16, 1)), 400)
    assert not np.any(np.asarray(tr.stats["diverged"]))
    assert np.all(np.asarray(tr.positions) <= 1.0)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: idf.mala(iso, 0.0), "step_size"),
        (lambda: idf.ula(iso, -1.0), "step_size"),
        (lambda: idf.mala(iso, 0.1, temperature=0.0), "temperature"),
        (lambda: idf.hmc(iso, 0.1, 0), "num_integration_steps"),
        (lambda: idf.underdamped_langevin(iso, 0.1, friction=-1.0), "friction"),
        (lambda: idf.underdamped_langevin(iso, 0.1, 1.0, mass=0.0), "mass"),
        (
            lambda: idf.sample(idf.ula(iso, 0.1), jax.random.key(0), jnp.zeros((4, 2)), 0),
            "num_steps",
        ),
        (
            lambda: idf.sample(idf.ula(iso, 0.1), jax.random.key(0), jnp.zeros((4, 2)), 10, thin=3),
            "thin",
        ),
        (
            lambda: idf.sample(
                idf.ula(iso, 0.1), jax.random.key(0), jnp.zeros((4, 2)), 10, burn_in=10
            ),
            "burn_in",
        ),
        (
            lambda: idf.sample(
                idf.ula(iso, 0.1),
                jax.random.key(0),
                {"a": jnp.zeros((4, 2)), "b": jnp.zeros((3, 2))},
                10,
            ),
            "x0_batch",
        ),
        (lambda: idf.sample(idf.ula(iso, 0.1), jax.random.key(0), jnp.zeros(()), 10), "x0_batch"),
        (lambda: idf.sample(idf.ula(iso, 0.1), 0, jnp.zeros((4, 2)), 10), "key"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_non_scalar_energy_is_a_clear_error(key):
    with pytest.raises(ValueError, match="scalar"):
        idf.sample(idf.mala(lambda x: x**2, 0.1), key, jnp.zeros((4, 2)), 10)


@pytest.mark.parametrize(
    "make",
    [
        lambda E: idf.ula(E, 0.1),
        lambda E: idf.mala(E, 0.1),
        lambda E: idf.underdamped_langevin(E, 0.1, 1.0),
        lambda E: idf.hmc(E, 0.1, 3),
    ],
)
def test_step_is_jit_vmap_and_grad_compatible(key, make):
    s = make(iso)
    state = s.init(jnp.ones(3), key)
    a, ia = s.step(key, state)
    b, ib = jax.jit(s.step)(key, state)
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    keys = jax.random.split(key, 4)
    states = jax.vmap(s.init)(jnp.ones((4, 3)) * jnp.arange(4.0)[:, None], keys)
    vs, vi = jax.vmap(s.step)(keys, states)
    for i in range(4):
        si, _ = s.step(keys[i], jax.tree.map(lambda l: l[i], states))
        chex.assert_trees_all_close(jax.tree.map(lambda l: l[i], vs), si, rtol=1e-5, atol=1e-6)

    def f(x):  # differentiate a step w.r.t. the starting position
        st, _ = s.step(key, s.init(x, key))
        return jnp.sum(st.position)

    g = jax.grad(f)(jnp.ones(3))
    assert np.all(np.isfinite(np.asarray(g)))
    # a state is cached: one gradient evaluation per Langevin step
    counter = {"n": 0}

    def counted(x):
        counter["n"] += 1
        return iso(x)

    s2 = make(counted)
    st = s2.init(jnp.ones(3))
    counter["n"] = 0
    jax.make_jaxpr(s2.step)(key, st)
    assert counter["n"] == 1  # traced once: the step evaluates E and grad E once (hmc: in a scan)


def test_grad_through_ula_run_matches_finite_differences(key):
    """d/d(theta) of the mean final position of a ULA run, through idf.sample."""
    x0 = jax.random.normal(key, (16, 2))

    def mean_final(theta):
        E = lambda x: jnp.sum(0.25 * x**4 - theta * x)  # non-linear, tilted
        tr = idf.sample(idf.ula(E, 0.05), key, x0, 40)
        return jnp.mean(tr.final_state.position)

    g = jax.grad(mean_final)(0.5)
    h = 1e-2
    fd = (mean_final(0.5 + h) - mean_final(0.5 - h)) / (2 * h)
    np.testing.assert_allclose(float(g), float(fd), rtol=2e-2)


def test_repeated_runs_do_not_recompile(key, x0):
    traces = []

    def counted(x):
        traces.append(1)
        return iso(x)

    idf.sample(idf.mala(counted, 0.3), key, x0, 40, thin=2)
    first = len(traces)
    # same energy, new numbers, new key, new start: no new trace of the energy
    idf.sample(idf.mala(counted, 0.2, temperature=1.5), jax.random.key(1), x0 + 1.0, 40, thin=2)
    assert len(traces) == first


def _run_py(code, env_extra=None, check=True, platform="cpu"):
    """Run `code` in a fresh Python; `platform=None` keeps this process's JAX platform."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for name, value in (env_extra or {}).items():  # XLA_FLAGS add to the session's flags
        env[name] = f"{env.get(name, '')} {value}".strip() if name == "XLA_FLAGS" else value
    if platform is not None:
        env["JAX_PLATFORMS"] = platform
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def test_checkpoint_survives_a_killed_process_and_resumes_identically(tmp_path):
    ck = tmp_path / "run.ckpt"
    code = f"""
        import os, signal, jax, jax.numpy as jnp, idf_jax as idf
        E = lambda x: jnp.sum(x**4 - 2 * x**2)
        def cb(done, total):
            if done >= 120:
                os.kill(os.getpid(), signal.SIGKILL)   # die hard, mid-run
        idf.sample(idf.mala(E, 0.1), jax.random.key(3), jnp.zeros((8, 2)), 400, thin=4, burn_in=40,
                   checkpoint={str(ck)!r}, chunk_draws=5, callback=cb)
    """
    # The killed run computes on this process's platform: a CPU-written checkpoint resumed
    # on a GPU continues correctly but is not bitwise equal to a GPU-only run.
    res = _run_py(code, check=False, platform=None)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert ck.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no half-written file
    E = lambda x: jnp.sum(x**4 - 2 * x**2)
    s = idf.mala(E, 0.1)
    resumed = idf.sample(
        s,
        jax.random.key(3),
        jnp.zeros((8, 2)),
        400,
        thin=4,
        burn_in=40,
        checkpoint=ck,
        chunk_draws=5,
    )
    straight = idf.sample(s, jax.random.key(3), jnp.zeros((8, 2)), 400, thin=4, burn_in=40)
    chex.assert_trees_all_equal(resumed.positions, straight.positions)
    chex.assert_trees_all_close(resumed.stats, straight.stats, rtol=1e-6)
    # a checkpoint from another run is refused with a clear message
    with pytest.raises(ValueError, match="different run"):
        idf.sample(
            s,
            jax.random.key(4),
            jnp.zeros((8, 2)),
            400,
            thin=4,
            burn_in=40,
            checkpoint=ck,
            chunk_draws=5,
        )


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, key):
    ck = tmp_path / "bad.ckpt"
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        idf.sample(idf.ula(iso, 0.1), key, jnp.zeros((4, 2)), 10, checkpoint=ck)


def test_sharded_over_8_cpu_devices_matches_one_device():
    code = """
        import jax, jax.numpy as jnp, numpy as np, idf_jax as idf
        assert len(jax.devices()) == 8
        E = lambda x: jnp.sum(x**4 - 2 * x**2)
        # 16 chains: 2 per device (MALA); 13: padded to a multiple of the device count (HMC)
        for n, s in ((16, idf.mala(E, 0.1)), (13, idf.hmc(E, 0.1, 4))):
            x0 = jax.random.normal(jax.random.key(0), (n, 3))
            many = idf.sample(s, jax.random.key(1), x0, 200, thin=4, burn_in=20)
            one = idf.sample(s, jax.random.key(1), x0, 200, thin=4, burn_in=20, devices=jax.devices()[:1])
            assert many.positions.shape == (n, 45, 3)
            np.testing.assert_allclose(np.asarray(many.positions), np.asarray(one.positions), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(np.asarray(many.stats["acceptance_rate"]), np.asarray(one.stats["acceptance_rate"]), rtol=1e-5)
        x0 = jax.random.normal(jax.random.key(0), (16, 3))
        tr = idf.sample(idf.mala(E, 0.1), jax.random.key(1), x0, 40)
        assert len(tr.positions.sharding.device_set) == 8, tr.positions.sharding
        print("ok")
    """
    res = _run_py(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert "ok" in res.stdout, res.stderr


@pytest.mark.slow
def test_two_processes_under_jax_distributed_match_one_process():
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "distributed_cpu.py")],
        env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "max |two-process - one-process| = 0" in res.stdout
