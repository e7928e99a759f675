"""The `idf` command: sample, anneal, train, serve, monitor and deploy from a terminal.

Every command has `--help` with examples. Bad options give one line on stderr,
`idf: error: ...`, and a non-zero exit status (2 for usage errors, 1 for others).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import typer
import yaml

__all__ = ["app", "main"]

app = typer.Typer(
    name="idf",
    help=(
        "idf-jax: energy-based diffusion from the command line.\n\n"
        "Examples:\n\n"
        "  idf capsules\n\n"
        "  idf sample --capsule molecular.lennard_jones_cluster --param n=13 "
        "--chains 256 --steps 10000\n\n"
        "  idf serve --config config.yaml --port 8000\n\n"
        "  idf deploy --cluster k8s-prod --namespace idf --dry-run"
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _console():
    from rich.console import Console

    return Console(stderr=False)


# --------------------------------------------------------------------------- helpers


def _load_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise typer.BadParameter(f"config file {str(path)!r} does not exist", param_hint="--config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise typer.BadParameter(
            f"{path} is not valid YAML: {str(e).splitlines()[0]}", param_hint="--config"
        ) from e
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a mapping at top level", param_hint="--config")
    return data


def _parse_params(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise typer.BadParameter(f"{k!r} is not a parameter name", param_hint="--param")
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise typer.BadParameter(
                f"cannot parse value of {k}: {v!r}", param_hint="--param"
            ) from e
    return out


def _capsule_and_params(capsule: str | None, param: list[str] | None, ccap: dict):
    """Capsule name from --capsule or the config's capsule.name; the config's params apply
    only to the capsule the config names, and --param values override them."""
    name = capsule or ccap.get("name")
    if not name:
        raise typer.BadParameter(
            "give --capsule (or capsule.name in --config)", param_hint="--capsule"
        )
    if name == ccap.get("name"):
        return name, {**(ccap.get("params") or {}), **_parse_params(param)}
    return name, _parse_params(param)


def _pick(cli_value, section: dict, key: str, default):
    if cli_value is not None:
        return cli_value
    return section.get(key, default)


def _atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename: a crash never leaves a half-written result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _leaf_arrays(tree) -> dict[str, Any]:
    import jax
    import numpy as np

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in flat:
        name = "x" + "".join(
            c if c.isalnum() or c == "_" else "_" for c in jax.tree_util.keystr(path)
        )
        out[name.rstrip("_") or "x"] = np.asarray(leaf)
    return out


def save_trace(trace, out: Path, *, plots: bool = True) -> list[Path]:
    """Write samples.npz (+ samples.nc via ArviZ when installed) and PNG plots into `out`."""
    import numpy as np

    written = []
    arrays = {f"position_{k}": v for k, v in _leaf_arrays(trace.positions).items()}
    arrays["energies"] = np.asarray(trace.energies)
    for k, v in trace.stats.items():
        arrays[f"stats_{k}"] = np.asarray(v)
    npz = out / "samples.npz"

    def _npz(tmp):
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    _atomic_write(npz, _npz)
    written.append(npz)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz as az
    except ImportError:
        az = None
    if az is not None:
        posterior = {k: v for k, v in _leaf_arrays(trace.positions).items()}
        idata = az.from_dict(
            posterior=posterior, sample_stats={"energy": np.asarray(trace.energies)}
        )
        nc = out / "samples.nc"
        _atomic_write(nc, lambda tmp: idata.to_netcdf(tmp))
        written.append(nc)
    if plots:
        written += _plot_energies(np.asarray(trace.energies), out)
    return written


def _plot_energies(e, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in range(min(e.shape[0], 16)):
        ax.plot(e[c], lw=0.8, alpha=0.8)
    ax.set_xlabel("draw")
    ax.set_ylabel("energy")
    ax.set_title(f"energy per draw ({min(e.shape[0], 16)} of {e.shape[0]} chains)")
    fig.tight_layout()
    p = out / "energy_trace.png"
    _atomic_write(p, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    paths.append(p)
    finite = e[np.isfinite(e)]
    if finite.size:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(finite.ravel(), bins=60, density=True)
        ax.set_xlabel("energy")
        ax.set_ylabel("density")
        ax.set_title("energy distribution (all chains, all draws)")
        fig.tight_layout()
        p = out / "energy_hist.png"
        _atomic_write(p, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)
        paths.append(p)
    return paths


def _write_json(path: Path, data) -> None:
    def w(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, default=str)

    _atomic_write(path, w)


# --------------------------------------------------------------------------- init


_DOMAIN_EXAMPLES = {
    "molecular": ("molecular.lennard_jones_cluster", {"n": 13}, 1e-3, 0.1),
    "plasma": ("plasma.thomson", {"n": 12}, 1e-3, 0.05),
    "biomedical": ("biomedical.ab_protein", {"sequence": "ABBABBABABBAB"}, 1e-3, 0.1),
    "lattice": ("lattice.ising", {"L": 16}, 1e-2, 2.0),
    "enterprise": ("enterprise.datacenter", {}, 1e-3, 1.0),
    "market": ("market.portfolio", {}, 1e-3, 0.01),
    "creative": ("creative.digits", {}, 1e-3, 1.0),
}


def _config_text(name: str, domain: str) -> str:
    import capsules

    capsule, params, step, temp = _DOMAIN_EXAMPLES.get(domain, (f"{domain}.", {}, 1e-3, 1.0))
    reg = capsules.registry()
    note = ""
    if capsule not in reg:
        same = [n for n in reg if n.startswith(domain + ".")]
        if same:
            capsule, params = same[0], {}
            note = "  # the first registered capsule of this domain; see `idf capsules`"
        else:
            note = "  # not registered in this install yet; see `idf capsules`"
    params_yaml = yaml.safe_dump(params, default_flow_style=False).strip() if params else "{}"
    params_block = (
        "\n".join("    " + line for line in params_yaml.splitlines()) if params else "    {}"
    )
    return f"""# idf-jax project "{name}" ({domain} domain).
# Every command reads this file with --config; command-line options override it.

capsule:
  # A registered capsule: `idf capsules` lists them with their parameters.
  name: {capsule}{note}
  params:
{params_block}

sampler:
  kind: mala            # mala | ula | underdamped | hmc
  step_size: {step}        # in the units of the state
  temperature: {temp}       # kT, in energy units of the capsule
  friction: 1.0         # underdamped only (1 / time)
  num_integration_steps: 10   # hmc only

sample:                 # `idf sample --config config.yaml`
  chains: 64
  steps: 10000          # per chain, burn-in included
  burn_in: 2000
  thin: 10
  seed: 0
  out: results/sample

equilibrium:            # `idf equilibrium --config config.yaml`
  chains: 64
  steps: 5000
  relax: true
  seed: 0
  out: results/equilibrium

nvp:                    # `idf train --config config.yaml --data data/`
  channels: [cpu, power, temp]   # telemetry columns used (CSV header names)
  window: 32
  epochs: 20
  seed: 0
  checkpoint: models/nvp

service:                # `idf serve --config config.yaml`; keys come from IDF_API_KEYS
  limits:
    max_chains: 1024
    max_steps: 100000
    max_dimensions: 4096
    max_body_bytes: 1048576
  batch_max_size: 64
  batch_max_wait_ms: 2.0

deploy:                 # `idf deploy --config config.yaml --cluster NAME --namespace idf`
  image: idf-jax:0.1.0
  replicas: 2
  cpu_request: "1"
  memory_request: 2Gi
  cpu_limit: "2"
  memory_limit: 4Gi
  min_replicas: 2
  max_replicas: 10
  target_cpu_percent: 70
"""


@app.command()
def init(
    name: str = typer.Argument(..., help="folder to create"),
    domain: str = typer.Option(..., "--domain", "-d", help="capsule domain, e.g. molecular"),
    force: bool = typer.Option(False, help="write into an existing folder"),
):
    """Scaffold a project folder with a commented config.yaml for DOMAIN.

    Example: idf init my-project --domain molecular
    """
    import capsules

    if domain not in capsules.DOMAINS:
        raise typer.BadParameter(
            f"unknown domain {domain!r}; choose one of {', '.join(capsules.DOMAINS)}",
            param_hint="--domain",
        )
    root = Path(name)
    if root.exists() and any(root.iterdir()) and not force:
        raise typer.BadParameter(
            f"{name!r} exists and is not empty (use --force)", param_hint="NAME"
        )
    for sub in ("data", "results", "models"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    text = _config_text(root.name, domain)
    _atomic_write(root / "config.yaml", lambda tmp: Path(tmp).write_text(text))
    (root / "data" / "README.md").write_text(
        "Telemetry for `idf train`: CSV files with a header row naming the channels.\n"
    )
    _console().print(f"created {root}/ (config.yaml, data/, results/, models/) for domain {domain}")


# --------------------------------------------------------------------------- capsules


@app.command("capsules")
def capsules_cmd(
    domain: str | None = typer.Option(None, help="only this domain"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
):
    """List registered capsules with descriptions and parameters.

    Example: idf capsules --domain molecular
    """
    import capsules

    reg = capsules.registry()
    if domain is not None:
        if domain not in capsules.DOMAINS:
            raise typer.BadParameter(
                f"unknown domain {domain!r}; choose one of {', '.join(capsules.DOMAINS)}",
                param_hint="--domain",
            )
        reg = {k: v for k, v in reg.items() if k.startswith(domain + ".")}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    k: {"description": v.description, "parameters": v.parameters}
                    for k, v in reg.items()
                },
                indent=2,
            )
        )
        return
    from rich.table import Table

    table = Table(title=f"{len(reg)} capsules")
    table.add_column("name")
    table.add_column("description")
    table.add_column("parameters")
    for k, v in reg.items():
        table.add_row(k, v.description, ", ".join(f"{p}={d}" for p, d in v.parameters.items()))
    _console().print(table)


# --------------------------------------------------------------------------- sample


@app.command()
def sample(
    capsule: str | None = typer.Option(None, help="registered capsule name (see `idf capsules`)"),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="capsule parameter KEY=VALUE (repeat)"
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="project config.yaml"),
    sampler: str | None = typer.Option(None, help="mala | ula | underdamped | hmc"),
    chains: int | None = typer.Option(None, min=1),
    steps: int | None = typer.Option(None, min=1, help="steps per chain, burn-in included"),
    burn_in: int | None = typer.Option(None, min=0),
    thin: int | None = typer.Option(None, min=1),
    step_size: float | None = typer.Option(None),
    temperature: float | None = typer.Option(None),
    friction: float | None = typer.Option(None),
    integration_steps: int | None = typer.Option(None, min=1, help="hmc leapfrog steps"),
    seed: int | None = typer.Option(None, min=0),
    out: Path | None = typer.Option(None, help="results folder"),
    plots: bool = typer.Option(True, help="write PNG plots"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    """Sample a capsule's Boltzmann distribution; save NPZ (+NetCDF) and PNG plots.

    Example: idf sample --capsule molecular.lennard_jones_cluster --param n=13 --chains 256
    --steps 10000
    """
    from ..service.jobs import SampleJob, build_capsule, run_sample, summarize_trace

    cfg = _load_yaml(config)
    ccap, csam, csmp = (
        cfg.get("capsule", {}) or {},
        cfg.get("sampler", {}) or {},
        cfg.get("sample", {}) or {},
    )
    name, params = _capsule_and_params(capsule, param, ccap)
    job = SampleJob(
        capsule=name,
        params=params,
        sampler=_pick(sampler, csam, "kind", "mala"),
        chains=_pick(chains, csmp, "chains", 16),
        steps=_pick(steps, csmp, "steps", 1000),
        thin=_pick(thin, csmp, "thin", 1),
        burn_in=_pick(burn_in, csmp, "burn_in", 0),
        step_size=_pick(step_size, csam, "step_size", 1e-3),
        temperature=_pick(temperature, csam, "temperature", 1.0),
        friction=_pick(friction, csam, "friction", 1.0),
        num_integration_steps=_pick(integration_steps, csam, "num_integration_steps", 10),
        seed=_pick(seed, csmp, "seed", 0),
    )
    out_dir = Path(_pick(out, csmp, "out", "results/sample"))
    build_capsule(job.capsule, job.params)  # fail fast on a bad capsule or parameters
    con = _console()
    con.print(
        f"[bold]{job.capsule}[/] {job.params}: "
        f"{job.chains} chains x {job.steps} steps of {job.sampler}"
    )
    t0 = time.perf_counter()
    trace, cap = run_sample(job, progress=progress)
    elapsed = time.perf_counter() - t0
    from ...diagnostics import summary as idf_summary

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
    _write_json(out_dir / "summary.json", s)
    written.append(out_dir / "summary.json")
    con.print(
        f"{job.chains * job.steps / elapsed:,.0f} chain-steps/s; wrote "
        + ", ".join(str(p) for p in written)
    )


# --------------------------------------------------------------------------- equilibrium


@app.command()
def equilibrium(
    capsule: str | None = typer.Option(None, help="registered capsule name"),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="capsule parameter KEY=VALUE"
    ),
    config: Path | None = typer.Option(None, "--config", "-c"),
    chains: int | None = typer.Option(None, min=1),
    steps: int | None = typer.Option(None, min=1),
    relax: bool | None = typer.Option(None, help="finish with a deterministic relaxation"),
    seed: int | None = typer.Option(None, min=0),
    out: Path | None = typer.Option(None, help="results folder"),
    plots: bool = typer.Option(True),
):
    """Anneal a capsule to its low-energy states (idf.sample_equilibrium) and save them.

    Example: idf equilibrium --capsule molecular.lennard_jones_cluster --param n=13 --chains 64
    """
    import numpy as np

    from ..service.jobs import EquilibriumJob, run_equilibrium

    cfg = _load_yaml(config)
    ccap, ceq = cfg.get("capsule", {}) or {}, cfg.get("equilibrium", {}) or {}
    name, params = _capsule_and_params(capsule, param, ccap)
    job = EquilibriumJob(
        capsule=name,
        params=params,
        chains=_pick(chains, ceq, "chains", 16),
        steps=_pick(steps, ceq, "steps", 2000),
        seed=_pick(seed, ceq, "seed", 0),
        relax=_pick(relax, ceq, "relax", True),
    )
    out_dir = Path(_pick(out, ceq, "out", "results/equilibrium"))
    con = _console()
    from rich.status import Status

    with Status(
        f"annealing {job.chains} chains of {job.capsule} for {job.steps} steps", console=con
    ):
        t0 = time.perf_counter()
        res, cap, summary = run_equilibrium(job)
        elapsed = time.perf_counter() - t0
    energies = np.asarray(summary["energy_per_chain"], dtype=float)
    from rich.table import Table

    t = Table(title=f"equilibrium: {job.capsule} ({elapsed:.1f} s)")
    for c in ("best energy", "median", "worst", "chains within 1e-4 of best"):
        t.add_column(c, justify="right")
    best = float(np.nanmin(energies))
    t.add_row(
        f"{best:.6f}",
        f"{np.nanmedian(energies):.6f}",
        f"{np.nanmax(energies):.6f}",
        str(int(np.sum(np.abs(energies - best) <= 1e-4 * max(1.0, abs(best))))),
    )
    con.print(t)
    arrays = {f"position_{k}": v for k, v in _leaf_arrays(res.position).items()}
    arrays["energy"] = energies

    def _npz(tmp):
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    _atomic_write(out_dir / "equilibrium.npz", _npz)
    written = [out_dir / "equilibrium.npz"]
    summary.update(capsule=job.capsule, params=dict(job.params), elapsed_s=elapsed)
    _write_json(out_dir / "summary.json", summary)
    written.append(out_dir / "summary.json")
    import jax

    best_x = jax.tree.map(lambda l: np.asarray(l)[summary["best_chain"]], res.position)
    decoded = cap.decode(best_x)
    for meth, fname in (("to_xyz", "best.xyz"),):
        fn = getattr(decoded, meth, None)
        if callable(fn):
            text = fn()
            _atomic_write(out_dir / fname, lambda tmp: Path(tmp).write_text(text))
            written.append(out_dir / fname)
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(np.sort(energies), "o", ms=3)
        ax.set_xlabel("chain (sorted)")
        ax.set_ylabel("best energy")
        ax.set_title(f"{job.capsule}: best energy per chain")
        fig.tight_layout()
        _atomic_write(
            out_dir / "equilibrium.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110)
        )
        plt.close(fig)
        written.append(out_dir / "equilibrium.png")
    con.print("wrote " + ", ".join(str(p) for p in written))


# --------------------------------------------------------------------------- train


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="project config.yaml (nvp section)"),
    data: Path = typer.Option(..., "--data", help="folder of CSV telemetry files (or one CSV)"),
    out: Path | None = typer.Option(None, help="checkpoint path (default: nvp.checkpoint)"),
    epochs: int | None = typer.Option(None, min=1),
    seed: int | None = typer.Option(None, min=0),
):
    """Train the NVP forecaster on telemetry CSVs with a live progress display.

    Example: idf train --config config.yaml --data ./data/
    """
    from ._train_config import train_from_config

    cfg = _load_yaml(config)
    nvp_cfg = dict(cfg.get("nvp", {}) or {})
    if epochs is not None:
        nvp_cfg["epochs"] = epochs
    if seed is not None:
        nvp_cfg["seed"] = seed
    if out is not None:
        nvp_cfg["checkpoint"] = str(out)
    if not data.exists():
        raise typer.BadParameter(f"{str(data)!r} does not exist", param_hint="--data")
    result = train_from_config(nvp_cfg, data)
    _console().print(result)


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    port: int = typer.Option(8000, min=1, max=65535),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="project config.yaml (service section)"
    ),
    insecure_no_auth: bool = typer.Option(
        False, help="accept requests without an API key (development)"
    ),
    log_level: str = typer.Option("info"),
    graceful_timeout: int = typer.Option(
        30, min=1, help="seconds to finish in-flight requests on shutdown"
    ),
):
    """Start the HTTP/WebSocket service (uvicorn). API keys: IDF_API_KEYS or service.api_keys.

    Example: IDF_API_KEYS=change-me-please idf serve --config config.yaml --port 8000
    """
    import logging

    import uvicorn

    from ..service import create_app, load_config

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    idf_log = logging.getLogger("idf_jax")
    idf_log.addHandler(handler)
    idf_log.setLevel(log_level.upper())
    cfg = _load_yaml(config)
    service_cfg = dict(cfg.get("service", {}) or {})
    if insecure_no_auth:
        service_cfg["auth_disabled"] = True
    conf = load_config(service_cfg)
    uvicorn.run(
        create_app(conf),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_timeout,
        ws="websockets-sansio" if _has("websockets") else "auto",
    )


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


# --------------------------------------------------------------------------- monitor


DASHBOARDS = ("energy-metrics", "http")


def _histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile from cumulative (upper bound, count) buckets, linear inside a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    total = buckets[-1][1]
    rank = q * total
    prev_b, prev_c = 0.0, 0.0
    for b, c in buckets:
        if c >= rank:
            if math.isinf(b):
                return prev_b
            frac = 0.0 if c == prev_c else (rank - prev_c) / (c - prev_c)
            return prev_b + (b - prev_b) * frac
        prev_b, prev_c = b, c
    return prev_b


def scrape(url: str, api_key: str | None, timeout: float = 5.0) -> dict[str, list]:
    """Fetch /metrics and parse it: {sample name: [(labels, value), ...]}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.get(url.rstrip("/") + "/metrics", headers=headers, timeout=timeout)
    if r.status_code == 401:
        raise ValueError("the service refused the API key (give --api-key or IDF_API_KEY)")
    r.raise_for_status()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _total(m, name, **match) -> float:
    return sum(
        v for labels, v in m.get(name, []) if all(labels.get(k) == w for k, w in match.items())
    )


def render_dashboard(name: str, m: dict, prev: dict | None, dt: float):
    """A rich Table for dashboard `name` from two scrapes `dt` seconds apart."""
    from rich.table import Table

    def rate(metric, **match):
        if prev is None or dt <= 0:
            return float("nan")
        return (_total(m, metric, **match) - _total(prev, metric, **match)) / dt

    if name == "energy-metrics":
        t = Table(title="idf energy metrics")
        t.add_column("quantity")
        t.add_column("total", justify="right")
        t.add_column("per second", justify="right")
        rows = [
            ("samples drawn", "idf_samples_drawn_total", {}),
            ("sampler chain-steps", "idf_sampler_steps_total", {}),
            ("NVP predictions", "idf_nvp_predictions_total", {}),
            ("EIL readings", "idf_eil_readings_total", {}),
            ("EIL decisions", "idf_eil_decisions_total", {}),
            ("proofs (valid)", "idf_eil_proofs_total", {"valid": "true"}),
            ("proofs (invalid)", "idf_eil_proofs_total", {"valid": "false"}),
            ("PFT minted", "idf_eil_pft_minted_total", {}),
        ]
        for label, metric, match in rows:
            r = rate(metric, **match)
            t.add_row(
                label, f"{_total(m, metric, **match):,.0f}", "-" if math.isnan(r) else f"{r:,.1f}"
            )
        bs_n = _total(m, "idf_nvp_batch_size_count")
        t.add_row(
            "mean NVP batch",
            f"{_total(m, 'idf_nvp_batch_size_sum') / bs_n:.1f}" if bs_n else "-",
            "",
        )
        t.add_row("open streams", f"{_total(m, 'idf_ws_connections'):.0f}", "")
        return t
    if name == "http":
        t = Table(title="idf HTTP requests")
        for c in ("route", "requests", "per second", "p50 ms", "p99 ms", "errors (4xx/5xx)"):
            t.add_column(c, justify="left" if c == "route" else "right")
        routes = sorted({lab["route"] for lab, _ in m.get("idf_http_requests_total", [])})
        for route in routes:
            buckets = [
                (float(lab["le"]), v)
                for lab, v in m.get("idf_http_request_duration_seconds_bucket", [])
                if lab.get("route") == route
            ]
            errs = sum(
                v
                for lab, v in m.get("idf_http_requests_total", [])
                if lab.get("route") == route and lab.get("status", "").startswith(("4", "5"))
            )
            r = rate("idf_http_requests_total", route=route)
            t.add_row(
                route,
                f"{_total(m, 'idf_http_requests_total', route=route):,.0f}",
                "-" if math.isnan(r) else f"{r:,.1f}",
                f"{1e3 * _histogram_quantile(buckets, 0.5):.1f}",
                f"{1e3 * _histogram_quantile(buckets, 0.99):.1f}",
                f"{errs:,.0f}",
            )
        return t
    raise ValueError(f"unknown dashboard {name!r}; choose one of {DASHBOARDS}")


@app.command()
def monitor(
    url: str = typer.Option("http://127.0.0.1:8000", help="service base URL"),
    dashboard: str = typer.Option("energy-metrics", help=f"one of {', '.join(DASHBOARDS)}"),
    api_key: str | None = typer.Option(
        None, envvar="IDF_API_KEY", help="Bearer key (or IDF_API_KEY)"
    ),
    interval: float = typer.Option(2.0, min=0.05, help="seconds between refreshes"),
    iterations: int = typer.Option(0, min=0, help="stop after N refreshes (0: until Ctrl-C)"),
):
    """A live terminal dashboard of a running service's metrics.

    Example: idf monitor --dashboard energy-metrics --url http://127.0.0.1:8000
    """
    if dashboard not in DASHBOARDS:
        raise typer.BadParameter(
            f"unknown dashboard {dashboard!r}; choose one of {', '.join(DASHBOARDS)}",
            param_hint="--dashboard",
        )
    import httpx
    from rich.live import Live

    def get():
        try:
            return scrape(url, api_key)
        except httpx.HTTPError as e:
            raise ConnectionError(f"cannot reach {url}: {e}") from e

    prev, t_prev = None, time.monotonic()
    m = get()
    n = 0
    with Live(
        render_dashboard(dashboard, m, None, 0.0), console=_console(), auto_refresh=False
    ) as live:
        while True:
            n += 1
            if iterations and n >= iterations:
                break
            time.sleep(interval)
            prev, m_now, t_now = m, get(), time.monotonic()
            live.update(render_dashboard(dashboard, m_now, prev, t_now - t_prev), refresh=True)
            m, t_prev = m_now, t_now


# --------------------------------------------------------------------------- deploy


@app.command()
def deploy(
    cluster: str | None = typer.Option(None, help="kubeconfig context of the target cluster"),
    namespace: str = typer.Option("idf", help="Kubernetes namespace"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="project config.yaml (deploy, service)"
    ),
    image: str | None = typer.Option(None, help="container image"),
    replicas: int | None = typer.Option(None, min=1),
    name: str = typer.Option("idf", help="name of the Kubernetes objects"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the manifests instead of applying"
    ),
    helm: Path | None = typer.Option(
        None, "--helm", help="write the manifests as a Helm chart into DIR"
    ),
    kubeconfig: Path | None = typer.Option(None, help="kubeconfig file (default: ~/.kube/config)"),
):
    """Render the Kubernetes manifests (ConfigMap, Deployment, Service, HPA) and apply them.

    Examples:

      idf deploy --cluster k8s-prod --namespace idf --dry-run

      idf deploy --namespace idf --helm charts/idf

      idf deploy --cluster k8s-prod --namespace idf
    """
    from ..k8s import DeploySpec, apply_manifests, render_manifests, to_yaml, write_helm_chart

    cfg = _load_yaml(config)
    dep = dict(cfg.get("deploy", {}) or {})
    if image is not None:
        dep["image"] = image
    if replicas is not None:
        dep["replicas"] = replicas
    known = set(DeploySpec.__dataclass_fields__) - {"namespace", "name", "service_config"}
    bad = set(dep) - known
    if bad:
        raise typer.BadParameter(
            f"unknown deploy keys {sorted(bad)}; known: {sorted(known)}", param_hint="--config"
        )
    spec = DeploySpec(
        namespace=namespace, name=name, service_config=cfg.get("service", {}) or {}, **dep
    )
    objs = render_manifests(spec)
    if helm is not None:
        paths = write_helm_chart(spec, helm)
        _console().print(f"wrote Helm chart {helm}/ ({len(paths)} files)")
        return
    if dry_run:
        typer.echo(to_yaml(objs), nl=False)
        return
    if not cluster:
        raise typer.BadParameter(
            "give --cluster (a kubeconfig context), or --dry-run / --helm DIR",
            param_hint="--cluster",
        )
    done = apply_manifests(
        objs, context=cluster, kubeconfig=str(kubeconfig) if kubeconfig else None
    )
    _console().print(f"applied to {cluster}/{namespace}: " + ", ".join(done))


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Entry point of `idf`: runs the command, turning errors into one line and an exit code."""
    from ..service.jobs import JobError

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=args, prog_name="idf", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("idf: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as e:  # usage errors (exit 2) and other click errors
        fmt = getattr(e, "format_message", None)
        msg = fmt() if callable(fmt) else str(e)
        print(f"idf: error: {' '.join(msg.split())}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1) or 1)
    except JobError as e:
        field = "param" if e.field.startswith("params") else e.field.replace("_", "-")
        print(f"idf: error: --{field}: {e.message}", file=sys.stderr)
        return 2 if e.status in (413, 422) else 1
    except (ValueError, FileNotFoundError, ConnectionError, ImportError, OSError) as e:
        print(f"idf: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
