"""Implicit differentiation of minimisers x*(θ): forward and reverse mode, under vmap,
in float32 and float64, without and with a projection (sphere, box).

Reference values: closed forms (a quadratic's A^-1, a linear energy on the sphere, a
box's active bound) and central finite differences of re-run minimisations. Energies
hold θ as `eqx.Module` fields, so every re-run reuses one compilation.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax.thermo import constraints as C

DTYPES = ["float32", "float64"]
TOL = {"float32": 2e-3, "float64": 1e-6}


def _x64(dtype):
    return jax.enable_x64(dtype == "float64")


def _all_modes(fn, theta, tangent):
    """(jvp along `tangent`, jacfwd, jacrev) of fn at theta."""
    _, jv = jax.jvp(fn, (theta,), (tangent,))
    return np.asarray(jv), np.asarray(jax.jacfwd(fn)(theta)), np.asarray(jax.jacrev(fn)(theta))


def _fd(fn, theta, h):
    cols = [(fn(theta + h * e) - fn(theta - h * e)) / (2 * h) for e in jnp.eye(theta.shape[0])]
    return np.stack([np.asarray(c) for c in cols], -1)


A = np.array([[2.0, 0.3], [0.1, 1.5]])


class _Quadratic(eqx.Module):
    a: jax.Array
    b: jax.Array

    def __call__(self, x):
        return 0.5 * jnp.sum((self.a @ x - self.b) ** 2)


class _Quartic(eqx.Module):
    theta: jax.Array

    def __call__(self, x):
        return jnp.sum((x - self.theta) ** 2) + 0.1 * jnp.sum(x**4) + 0.2 * x[0] * x[1]


class _Linear(eqx.Module):
    c: jax.Array

    def __call__(self, x):
        return jnp.dot(self.c, x)


class _Thomson(eqx.Module):
    theta: jax.Array

    def __call__(self, x):
        return _thomson(x, self.theta)


class _Shifted(eqx.Module):
    theta: jax.Array

    def __call__(self, x):
        return jnp.sum((x - self.theta) ** 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quadratic_minimiser_closed_form_all_modes(dtype):
    # E = |A x - b|^2 / 2: x* = A^-1 b, dx*/db = A^-1.
    with _x64(dtype):
        a = jnp.asarray(A, dtype)

        def xstar(b):
            E = _Quadratic(a, b)
            return idf.relax(E, jnp.zeros((2, 2), dtype), num_steps=200, gtol=1e-12)[0][1]

        b = jnp.asarray([1.0, -1.0], dtype)
        jv, jf, jr = _all_modes(xstar, b, jnp.asarray([1.0, 2.0], dtype))
        inv = np.linalg.inv(A)
        tol = TOL[dtype]
        np.testing.assert_allclose(jf, inv, atol=tol)
        np.testing.assert_allclose(jr, inv, atol=tol)
        np.testing.assert_allclose(jv, inv @ [1.0, 2.0], atol=tol)
        assert jf.dtype == np.dtype(dtype)
        # vmap over θ, in both modes
        bs = jnp.stack([b, 2 * b, -b])
        np.testing.assert_allclose(np.asarray(jax.vmap(jax.jacfwd(xstar))(bs)), [inv] * 3, atol=tol)
        np.testing.assert_allclose(np.asarray(jax.vmap(jax.jacrev(xstar))(bs)), [inv] * 3, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonlinear_minimiser_matches_finite_differences(dtype):
    with _x64(dtype):

        def xstar(theta):
            E = _Quartic(theta)
            return idf.relax(E, jnp.zeros((1, 2), dtype), num_steps=300, gtol=1e-12)[0][0]

        theta = jnp.asarray([1.0, 2.0], dtype)
        jv, jf, jr = _all_modes(xstar, theta, jnp.asarray([0.5, -1.0], dtype))
        fd = _fd(xstar, theta, 1e-2 if dtype == "float32" else 1e-5)
        tol = TOL[dtype] * 2
        np.testing.assert_allclose(jf, fd, atol=tol)
        np.testing.assert_allclose(jr, fd, atol=tol)
        np.testing.assert_allclose(jv, fd @ [0.5, -1.0], atol=tol)


def _sphere(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sphere_linear_energy_closed_form(dtype):
    # min c.x on the unit sphere: x* = -c/|c|, dx*/dc = -(I - x* x*^T)/|c| (the
    # unconstrained rule, grad E = c != 0, would have no answer at all).
    with _x64(dtype):

        def xstar(c):
            x0 = jnp.asarray([[0.3, 0.2, 0.9], [-0.5, 0.5, 0.5]], dtype)
            x, _ = idf.relax(
                _Linear(c), x0, method="fire", project=_sphere, num_steps=2000, gtol=1e-12
            )
            return x[0]

        c = jnp.asarray([1.0, -2.0, 2.0], dtype)
        x_star = -np.asarray(c) / 3.0
        exact = -(np.eye(3) - np.outer(x_star, x_star)) / 3.0
        np.testing.assert_allclose(np.asarray(xstar(c)), x_star, atol=TOL[dtype])
        jv, jf, jr = _all_modes(xstar, c, jnp.asarray([1.0, 0.0, 0.0], dtype))
        np.testing.assert_allclose(jf, exact, atol=TOL[dtype])
        np.testing.assert_allclose(jr, exact, atol=TOL[dtype])
        np.testing.assert_allclose(jv, exact[:, 0], atol=TOL[dtype])


N_THOMSON = 5
_ANISO = np.array([0.0, 0.3, 0.7])


def _thomson(x, theta):
    """Coulomb energy of 5 charges on the sphere (charge 0 is 1 + θ_0) in a field θ_1
    along z and an anisotropic trap (no continuous symmetry left)."""
    q = jnp.ones(N_THOMSON, x.dtype).at[0].add(theta[0])
    d = x[:, None, :] - x[None, :, :]
    r = jnp.sqrt(jnp.sum(d**2, -1) + jnp.eye(N_THOMSON, dtype=x.dtype))
    iu = jnp.triu_indices(N_THOMSON, 1)
    coulomb = jnp.sum((q[:, None] * q[None, :] / r)[iu])
    return (
        coulomb
        + theta[1] * jnp.sum(x[:, 2])
        + jnp.sum(x**2 * jnp.asarray(_ANISO, x.dtype)[None, :])
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_thomson_on_sphere_matches_finite_differences(dtype):
    with _x64(dtype):
        x0 = _sphere(jax.random.normal(jax.random.key(3), (1, N_THOMSON, 3), dtype))
        sphere = C.Sphere()

        def xstar(theta):
            x, _ = idf.relax(
                _Thomson(theta), x0, method="fire", project=sphere, num_steps=3000, gtol=1e-12
            )
            return x[0]

        theta = jnp.asarray([0.2, 0.3], dtype)
        x = xstar(theta)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(x), axis=-1), 1.0, atol=1e-6)
        jv, jf, jr = _all_modes(xstar, theta, jnp.asarray([1.0, -1.0], dtype))
        fd = _fd(xstar, theta, 1e-3 if dtype == "float32" else 1e-5)
        tol = 2e-3 if dtype == "float32" else 1e-6
        np.testing.assert_allclose(jf, fd, atol=tol)
        np.testing.assert_allclose(jr, fd, atol=tol)
        np.testing.assert_allclose(jv, fd @ np.array([1.0, -1.0]), atol=tol)
        # tangents stay on the sphere: x . dx = 0 for every point
        np.testing.assert_allclose(np.einsum("ij,ijk->ik", np.asarray(x), jf), 0.0, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_active_bound_closed_form(dtype):
    # min |x - θ|^2 with x <= u: x* = min(θ, u), dx*/dθ = 1 where free, 0 where active,
    # dx*/du = 1 where active (the bound, closed over by the projection, is a parameter).
    with _x64(dtype):

        def xstar(p):
            theta, upper = p[:2], p[2]
            box = C.Box(upper=upper)
            x, _ = idf.relax(
                _Shifted(theta), jnp.zeros((1, 2), dtype), method="fire", project=box, gtol=1e-12
            )
            return x[0]

        p = jnp.asarray([2.0, 0.3, 1.0], dtype)
        np.testing.assert_allclose(np.asarray(xstar(p)), [1.0, 0.3], atol=TOL[dtype])
        exact = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        jv, jf, jr = _all_modes(xstar, p, jnp.asarray([1.0, 1.0, 1.0], dtype))
        np.testing.assert_allclose(jf, exact, atol=TOL[dtype])
        np.testing.assert_allclose(jr, exact, atol=TOL[dtype])
        np.testing.assert_allclose(jv, exact.sum(1), atol=TOL[dtype])


def test_sample_equilibrium_positions_on_the_sphere_and_in_a_box(key):
    def on_sphere(c):
        res = idf.sample_equilibrium(
            _Linear(c),
            key,
            jax.random.normal(jax.random.key(0), (4, 3)),
            num_steps=100,
            constraints=[C.Sphere()],
            prerelax_steps=0,
        )
        return res.best_position

    c = jnp.asarray([1.0, -2.0, 2.0])
    x_star = -np.asarray(c) / 3.0
    exact = -(np.eye(3) - np.outer(x_star, x_star)) / 3.0
    np.testing.assert_allclose(np.asarray(jax.jacrev(on_sphere)(c)), exact, atol=2e-3)
    np.testing.assert_allclose(np.asarray(jax.jacfwd(on_sphere)(c)), exact, atol=2e-3)

    def in_box(theta):
        res = idf.sample_equilibrium(
            _Shifted(theta),
            key,
            jnp.zeros((4, 2)),
            num_steps=100,
            constraints=[C.Box(upper=1.0)],
            prerelax_steps=0,
        )
        return res.best_position

    jac = np.asarray(jax.jacrev(in_box)(jnp.asarray([2.0, 0.3])))
    np.testing.assert_allclose(jac, [[0.0, 0.0], [0.0, 1.0]], atol=2e-3)


def test_sphere_constraint_projects_and_penalises():
    x = jnp.asarray([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]])
    s = C.Sphere(radius=2.0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(s.project(x)), axis=-1), 2.0, rtol=1e-6)
    assert float(s.violation(x)) == pytest.approx(3.0)
    assert float(s.penalty(x)) == 0.0
    pen = C.Sphere(radius=2.0, mode="penalty", weight=10.0)
    assert float(pen.penalty(x)) == pytest.approx(90.0)
    assert C.has_projection([s]) and not C.has_projection([pen])
    with pytest.raises(ValueError, match="radius"):
        C.Sphere(radius=-1.0)
