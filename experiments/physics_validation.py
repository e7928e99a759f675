"""Physics validation across systems and step sizes: energy-law fidelity and entropy coherence.

    PYTHONPATH=. python experiments/physics_validation.py [--quick]

Writes experiments/results/physics_validation.md.

Energy-law fidelity (ELF, `idf.validate.energy_law_fidelity`): fraction of HMC trajectories
(NVE leapfrog integration) with |dH| < tol, counted over every trajectory inside the scan.
Systems: a 100-d standard Gaussian (T = 1) and the LJ13 cluster at its icosahedral global
minimum (E = -44.3268, T = 0.05, solid). Step sizes are swept at a fixed trajectory length
(Gaussian: eps L = 1.5; LJ13: dt L = 0.2), so the table shows where the conventional
acceptance-rate targets (0.65-0.8) sit against the ELF >= 99.9 % requirement at tol = 0.01.
ELF applies only to Hamiltonian dynamics; no ELF is computed for Langevin samplers.

Entropy coherence (`idf.validate.entropy_coherence`): fraction of recorded intervals in which
the ensemble (the chains) does not increase its free energy F = <E> - T S beyond 3 bootstrap
standard errors, for relaxation from a far-from-equilibrium start at T = 1. Systems: an 8-d
anisotropic Gaussian (precisions 0.5..4; Gaussian entropy estimator, exact here) and a 2-d
double well E = (x^2 - 4)^2 / 4 + y^2 / 2 from (-3, 3) (kNN entropy estimator; step sizes x 0.25,
stiffest curvature ~23 at the start). Negative control: the
relaxing part of a trace played backwards.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

import idf_jax as idf
from idf_jax import validate

OUT = os.path.join(os.path.dirname(__file__), "results", "physics_validation.md")


# --------------------------------------------------------------------------- systems


def gauss100(x):
    return 0.5 * jnp.sum(x**2)


def lj_energy(x):
    i, j = np.triu_indices(x.shape[0], 1)
    r2 = jnp.sum((x[i] - x[j]) ** 2, axis=-1)
    inv6 = 1.0 / r2**3
    return jnp.sum(4.0 * (inv6**2 - inv6))


def lj13_minimum():
    phi = (1 + 5**0.5) / 2
    v = []
    for a in (-1, 1):
        for b in (-phi, phi):
            v += [(0, a, b), (a, b, 0), (b, 0, a)]
    x = np.vstack([np.zeros(3), np.array(v) / np.linalg.norm(v[0]) * 1.1])
    g = jax.grad(lambda y: lj_energy(y.reshape(13, 3)))
    res = scipy.optimize.minimize(
        lambda y: float(lj_energy(jnp.asarray(y.reshape(13, 3), jnp.float32))),
        x.ravel(),
        jac=lambda y: np.asarray(g(jnp.asarray(y, jnp.float32)), np.float64),
        method="L-BFGS-B",
        options=dict(gtol=1e-8),
    )
    return jnp.asarray(res.x.reshape(13, 3), jnp.float32), res.fun


PREC = jnp.linspace(0.5, 4.0, 8)


def gauss8(x):
    return 0.5 * jnp.sum(PREC * x**2)


def double_well(x):
    return 0.25 * (x[0] ** 2 - 4.0) ** 2 + 0.5 * x[1] ** 2


# --------------------------------------------------------------------------- ELF


def elf_rows(quick):
    rows = []
    key = jax.random.key(0)
    chains, steps = (8, 60) if quick else (16, 200)
    x0 = jax.random.normal(key, (chains, 100))
    for eps in [0.0125, 0.025, 0.05, 0.1, 0.2, 0.3]:
        L = max(1, round(1.5 / eps))
        tr = idf.sample(idf.hmc(gauss100, eps, L), key, x0, steps + 20, burn_in=20)
        rows.append(_elf_row("Gaussian 100-d, T = 1", eps, L, tr))
    x_min, e_min = lj13_minimum()
    x0 = jnp.broadcast_to(x_min, (chains, 13, 3))
    for dt in [0.001, 0.002, 0.004, 0.008, 0.016]:
        L = max(1, round(0.2 / dt))
        tr = idf.sample(idf.hmc(lj_energy, dt, L, temperature=0.05), key, x0, steps)
        rows.append(_elf_row(f"LJ13 (E_min {e_min:.4f}), T = 0.05", dt, L, tr))
    return rows


def _elf_row(system, eps, L, tr):
    return dict(
        system=system,
        eps=eps,
        L=L,
        trajectories=int(tr.stats["num_trajectories"].sum()),
        acceptance=float(tr.stats["acceptance_rate"].mean()),
        mean_abs_dh=float(tr.stats["mean_abs_energy_error"].mean()),
        max_abs_dh=float(tr.stats["max_abs_energy_error"].max()),
        elf_001=float(validate.energy_law_fidelity(tr, 0.01)),
        elf_01=float(validate.energy_law_fidelity(tr, 0.1)),
        elf_1=float(validate.energy_law_fidelity(tr, 1.0)),
        diverged=int(tr.stats["diverged"].sum()),
    )


# --------------------------------------------------------------------------- coherence


def coherence_rows(quick):
    rows = []
    chains, steps, thin = (128, 120, 3) if quick else (256, 300, 3)
    key = jax.random.key(1)
    far8 = 8.0 + 0.1 * jax.random.normal(key, (chains, 8))
    far2 = jnp.array([-3.0, 3.0]) + 0.1 * jax.random.normal(key, (chains, 2))

    def samplers(c):  # step sizes scaled by c: stable for the system's stiffest curvature
        return [
            (f"mala eta={0.05 * c:g}", lambda e: idf.mala(e, 0.05 * c)),
            (f"mala eta={0.1 * c:g}", lambda e: idf.mala(e, 0.1 * c)),
            (f"mala eta={0.2 * c:g}", lambda e: idf.mala(e, 0.2 * c)),
            (f"ula eta={0.05 * c:g}", lambda e: idf.ula(e, 0.05 * c)),
            (f"ula eta={0.2 * c:g}", lambda e: idf.ula(e, 0.2 * c)),
            (f"hmc eps={0.1 * c:g} L=5", lambda e: idf.hmc(e, 0.1 * c, 5)),
            (
                f"underdamped h={0.1 * c:g} gamma=2",
                lambda e: idf.underdamped_langevin(e, 0.1 * c, 2.0),
            ),
            (
                f"underdamped h={0.1 * c:g} gamma=0.2",
                lambda e: idf.underdamped_langevin(e, 0.1 * c, 0.2),
            ),
        ]

    for system, energy, x0, est, c in [
        ("Gaussian 8-d (prec 0.5..4)", gauss8, far8, "gaussian", 1.0),
        ("double well 2-d", double_well, far2, "knn", 0.25),
    ]:
        for name, make in samplers(c):
            tr = idf.sample(make(energy), key, x0, steps, thin=thin, burn_in=0)
            res = validate.entropy_coherence(
                tr, 1.0, estimator=est, details=True, num_bootstrap=50 if est == "knn" else 100
            )
            rows.append(
                dict(
                    system=system,
                    sampler=name,
                    estimator=est,
                    intervals=int(res.change.size),
                    coherence=float(res.fraction),
                    f_start=float(res.free_energy[0]),
                    f_end=float(res.free_energy[-1]),
                    violations=int(res.violated.sum()),
                )
            )
        # negative control: the relaxing head of the mala eta=0.1 trace, backwards
        tr = idf.sample(idf.mala(energy, 0.1 * c), key, x0, steps, thin=thin)
        head = tr._replace(positions=tr.positions[:, 19::-1], energies=tr.energies[:, 19::-1])
        res = validate.entropy_coherence(
            head, 1.0, estimator=est, details=True, num_bootstrap=50 if est == "knn" else 100
        )
        rows.append(
            dict(
                system=system,
                sampler=f"CONTROL: mala eta={0.1 * c:g}, first 20 draws reversed",
                estimator=est,
                intervals=int(res.change.size),
                coherence=float(res.fraction),
                f_start=float(res.free_energy[0]),
                f_end=float(res.free_energy[-1]),
                violations=int(res.violated.sum()),
            )
        )
    return rows


# --------------------------------------------------------------------------- report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    elf = elf_rows(args.quick)
    coh = coherence_rows(args.quick)
    cmd = "PYTHONPATH=. python experiments/physics_validation.py" + (
        " --quick" if args.quick else ""
    )
    lines = [
        "# Physics validation: energy-law fidelity and entropy coherence",
        "",
        f"Reproduce: `{cmd}` (CPU, float32, jax {jax.__version__}; {time.time() - t0:.0f} s on a "
        "shared, heavily loaded 2-core machine).",
        "",
        "## Energy-law fidelity (HMC / NVE leapfrog only)",
        "",
        "ELF(tol) = fraction of trajectories with |dH| < tol, over every trajectory of the run. "
        "Trajectory length fixed per system; step size swept.",
        "",
        "| system | step | L | trajectories | acceptance | mean abs dH | max abs dH | ELF(0.01) | ELF(0.1) | ELF(1) | diverged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in elf:
        lines.append(
            f"| {r['system']} | {r['eps']:g} | {r['L']} | {r['trajectories']} | {r['acceptance']:.4f} | "
            f"{r['mean_abs_dh']:.2e} | {r['max_abs_dh']:.2e} | {100 * r['elf_001']:.2f} % | "
            f"{100 * r['elf_01']:.2f} % | {100 * r['elf_1']:.2f} % | {r['diverged']} |"
        )
    lines += [
        "",
        "Reading: ELF(0.01) >= 99.9 % needs the energy error's spread well below 0.01. On the "
        "100-d Gaussian leapfrog conserves the shadow energy, so sd(dH) ~ sqrt(d) eps^2 / 4; "
        "99.9 % at tol 0.01 needs eps < 0.035 (acceptance > 0.999). At the step sizes that the "
        "usual acceptance targets 0.65-0.8 give (eps ~ 0.2-0.3 here), ELF(0.01) is a few percent: "
        "HMC tuned for sampling efficiency does not conserve energy to 0.01, and this table says "
        "so rather than loosening the tolerance. LJ13 at an MD time step dt = 0.002 passes.",
        "",
        "## Entropy coherence (heat bath, T = 1)",
        "",
        "Coherence = fraction of recorded intervals where F = <E> - T S does not rise by more than "
        "3 bootstrap SEs. The chains are the ensemble; relaxation starts far from equilibrium.",
        "",
        "| system | sampler | entropy estimator | intervals | coherence | F start | F end | violations |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in coh:
        lines.append(
            f"| {r['system']} | {r['sampler']} | {r['estimator']} | {r['intervals']} | "
            f"{100 * r['coherence']:.1f} % | {r['f_start']:.2f} | {r['f_end']:.2f} | {r['violations']} |"
        )
    f_eq = -0.5 * float(jnp.sum(jnp.log(2 * jnp.pi / PREC)))
    lines += [
        "",
        f"Exact equilibrium free energy of the 8-d Gaussian: F_eq = {f_eq:.3f}.",
        "",
        "What the law covers: MALA and HMC leave exp(-E/T) invariant, so KL(p_t || pi) (and F) "
        "cannot rise (data-processing inequality); ULA and BAOAB leave a step-size-biased law "
        "invariant, and underdamped dynamics is monotone in phase space, not in the position "
        "marginal recorded here (low friction lets the ensemble overshoot), so violations there "
        "are physics, not estimator noise. The reversed controls should fail; a control at or near "
        "100 % means the entropy estimator's bootstrap SE at this ensemble size is too large to "
        "see the reversal interval by interval (the metric has no power there; seen with kNN at "
        "128 chains on the double well in the --quick run): read such rows as inconclusive.",
        "",
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, OUT)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
