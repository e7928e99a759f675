"""`idf init NAME --domain D`: scaffold a project folder with a commented config.yaml."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from ..._io import atomic_write_bytes
from ._common import console

__all__ = ["init"]


_DATACENTER = {
    "servers": [
        {"name": "rack-a", "idle_power_kw": 0.10, "max_power_kw": 0.30, "service_rate": 500.0},
        {"name": "rack-b", "idle_power_kw": 0.12, "max_power_kw": 0.35, "service_rate": 700.0},
    ],
    "workloads": [
        {"name": "web", "request_rate": 120.0},
        {"name": "batch", "request_rate": 200.0},
    ],
    "recirculation": 2.0,
    "constraints": {"uptime": 0.999, "latency_max": 20.0},
}
_PORTFOLIO = {
    "mu": [0.08, 0.05, 0.03],
    "cov": [[0.040, 0.006, 0.002], [0.006, 0.020, 0.001], [0.002, 0.001, 0.010]],
    "risk_aversion": 3.0,
    "names": ["equity", "credit", "bonds"],
}

_DOMAIN_EXAMPLES = {
    "molecular": ("molecular.lennard_jones_cluster", {"n": 13}, 1e-3, 0.1),
    "plasma": ("plasma.thomson", {"n": 12}, 1e-3, 0.05),
    "biomedical": ("biomedical.ab_protein", {"sequence": "ABBABBABABBAB"}, 1e-3, 0.1),
    "lattice": ("lattice.ising", {"L": 16}, 1e-2, 2.0),
    "enterprise": ("enterprise.datacenter", {"config": _DATACENTER}, 1e-3, 1.0),
    "market": ("market.portfolio", _PORTFOLIO, 1e-3, 0.01),
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
    params_yaml = (
        yaml.safe_dump(params, default_flow_style=None, sort_keys=False).strip() if params else "{}"
    )
    params_block = (
        "\n".join("    " + line for line in params_yaml.splitlines()) if params else "    {}"
    )
    return f"""# idf-jax project "{name}" ({domain} domain).
# Every command reads this file with --config; command-line options override it.
# Relative paths here (out, checkpoint) are inside this project folder.

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
  units: {{cpu: fraction, power: kW, temp: degC}}   # recorded in the checkpoint
  interval_s: 900       # seconds between rows; a `timestamp` column is checked against it
  window: 32
  epochs: 20
  seed: 0
  checkpoint: models/nvp.ckpt

predict:                # `idf predict --config config.yaml --data data/site.csv`
  out: results/predict

backtest:               # `idf backtest --config config.yaml --data data/site.csv`
  out: results/backtest

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
    atomic_write_bytes(root / "config.yaml", text.encode())
    (root / "data" / "README.md").write_text(
        "Telemetry for `idf train`: CSV files with a header row naming the channels and a\n"
        "`timestamp` column (seconds or ISO 8601; sorted, evenly spaced).\n"
    )
    console().print(f"created {root}/ (config.yaml, data/, results/, models/) for domain {domain}")
