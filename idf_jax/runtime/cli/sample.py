"""`idf sample`: sample a capsule's Boltzmann distribution and save the draws and plots."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..._io import atomic_write_json
from ._common import capsule_and_params, console, load_yaml, pick, project_path, save_trace

__all__ = ["sample"]


def sample(
    capsule: str | None = typer.Option(
        None,
        help="registered capsule name (see `idf capsules`)",
        show_default="config capsule.name",
    ),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        "-p",
        help="capsule parameter KEY=VALUE (repeat)",
        show_default="config capsule.params",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="project config.yaml", show_default="none"
    ),
    sampler: str | None = typer.Option(
        None,
        help="mala | ula | underdamped | hmc | mams (idf.sample_tuned: MAMS tuned on the "
        "chains during --burn-in; 0: the tuner's warm-up)",
        show_default="config sampler.kind, else mala",
    ),
    chains: int | None = typer.Option(None, min=1, show_default="config sample.chains, else 16"),
    steps: int | None = typer.Option(
        None,
        min=1,
        help="steps per chain, burn-in included",
        show_default="config sample.steps, else 1000",
    ),
    burn_in: int | None = typer.Option(None, min=0, show_default="config sample.burn_in, else 0"),
    thin: int | None = typer.Option(None, min=1, show_default="config sample.thin, else 1"),
    step_size: float | None = typer.Option(
        None, show_default="config sampler.step_size, else 0.001"
    ),
    temperature: float | None = typer.Option(
        None, show_default="config sampler.temperature, else 1.0"
    ),
    friction: float | None = typer.Option(None, show_default="config sampler.friction, else 1.0"),
    integration_steps: int | None = typer.Option(
        None,
        min=1,
        help="hmc leapfrog steps",
        show_default="config sampler.num_integration_steps, else 10",
    ),
    seed: int | None = typer.Option(None, min=0, show_default="config sample.seed, else 0"),
    preset: str | None = typer.Option(
        None,
        help="sampler preset (a packaged name or a file written by `idf evolve sampler`): "
        "its sampler, step size and leapfrog steps, unless given here; or a tuner preset "
        "(target sample_tuned): sampler mams with the preset's tuner settings",
        show_default="config sampler.preset, else none",
    ),
    out: Path | None = typer.Option(
        None,
        help="results folder",
        show_default="config sample.out, else results/sample; in the --config project folder",
    ),
    plots: bool = typer.Option(True, help="write PNG plots"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    """Sample a capsule's Boltzmann distribution; save NPZ (+NetCDF) and PNG plots.

    Example: idf sample --capsule molecular.lennard_jones_cluster --param n=13 --chains 256
    --steps 10000
    """
    from ..service.jobs import SampleJob, build_capsule, run_sample, summarize_trace

    cfg = load_yaml(config)
    ccap, csam, csmp = (
        cfg.get("capsule", {}) or {},
        cfg.get("sampler", {}) or {},
        cfg.get("sample", {}) or {},
    )
    name, params = capsule_and_params(capsule, param, ccap)
    preset = pick(preset, csam, "preset", None)
    tuner = None
    if preset is not None:
        from ..._checks import ArgumentError
        from ...run.tuned import read_sampler_preset, read_tuner_preset

        try:
            tuner = read_tuner_preset(preset)
        except ArgumentError as e:
            raise typer.BadParameter(str(e), param_hint="--preset") from None
    if tuner is not None:  # MAMS tuned with the preset's settings (idf.sample_tuned)
        kind = pick(sampler, csam, "kind", "mams")
        if kind != "mams":
            raise typer.BadParameter(
                f"preset {preset!r} is a tuner preset (sampler mams), not for the sampler "
                f"{kind!r}; leave --sampler out or pass --sampler mams",
                param_hint="--preset",
            )
        unused = [
            flag
            for flag, v in (
                ("--step-size", step_size),
                ("--friction", friction),
                ("--integration-steps", integration_steps),
            )
            if v is not None
        ]
        if unused:
            raise typer.BadParameter(
                f"preset {preset!r} is a tuner preset: the MAMS tuner chooses the step size "
                f"and trajectory length, so {', '.join(unused)} would not be used",
                param_hint="--preset",
            )
        csam = {**csam, "kind": "mams"}
    elif preset is not None:
        from ..._checks import ArgumentError
        from ...run.tuned import read_sampler_preset

        try:
            target, pconf = read_sampler_preset(preset)
        except ArgumentError as e:
            raise typer.BadParameter(str(e), param_hint="--preset") from None
        kind = pick(sampler, csam, "kind", target)
        if kind != target:
            raise typer.BadParameter(
                f"preset {preset!r} is for {target}, not the sampler {kind!r}",
                param_hint="--preset",
            )
        # the preset fills what neither the command line nor the config sets
        csam = {"kind": target, **pconf, **csam}
    job = SampleJob(
        capsule=name,
        params=params,
        sampler=pick(sampler, csam, "kind", "mala"),
        chains=pick(chains, csmp, "chains", 16),
        steps=pick(steps, csmp, "steps", 1000),
        thin=pick(thin, csmp, "thin", 1),
        burn_in=pick(burn_in, csmp, "burn_in", 0),
        step_size=pick(step_size, csam, "step_size", 1e-3),
        temperature=pick(temperature, csam, "temperature", 1.0),
        friction=pick(friction, csam, "friction", 1.0),
        num_integration_steps=pick(integration_steps, csam, "num_integration_steps", 10),
        seed=pick(seed, csmp, "seed", 0),
        preset=None if tuner is None else str(preset),
    )
    out_dir = project_path(out, config, csmp, "out", "results/sample")
    build_capsule(job.capsule, job.params)  # fail fast on a bad capsule or parameters
    con = console()
    con.print(
        f"[bold]{job.capsule}[/] {job.params}: "
        f"{job.chains} chains x {job.steps} steps of {job.sampler}"
    )
    t0 = time.perf_counter()
    trace, cap = run_sample(job, progress=progress)
    elapsed = time.perf_counter() - t0
    import numpy as np

    from ...diagnostics import summary as idf_summary

    with np.errstate(divide="ignore", invalid="ignore"):  # a constant chain: R-hat undefined
        idf_summary(trace, print_table=True)
    written = save_trace(trace, out_dir, plots=plots)
    s = summarize_trace(trace)
    s.update(
        capsule=job.capsule,
        params=dict(job.params),
        sampler=job.sampler,
        steps=job.steps,
        elapsed_s=elapsed,
        seed=job.seed,
    )
    atomic_write_json(out_dir / "summary.json", s)
    written.append(out_dir / "summary.json")
    con.print(
        f"{job.chains * job.steps / elapsed:,.0f} chain-steps/s; wrote "
        + ", ".join(str(p) for p in written)
    )
