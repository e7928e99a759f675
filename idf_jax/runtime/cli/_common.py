"""What the commands share: the console, the config file and `--param` parsing, and the
writers of results (NPZ, NetCDF, PNG plots), all atomic (`idf_jax._io`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from ..._io import atomic_write

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure
    from rich.console import Console

__all__ = [
    "capsule_and_params",
    "console",
    "leaf_arrays",
    "load_yaml",
    "parse_params",
    "pick",
    "project_path",
    "save_figure",
    "save_npz",
    "save_trace",
]


def console() -> Console:
    """The rich console the commands print to (stdout)."""
    from rich.console import Console

    return Console(stderr=False)


def load_yaml(path: Path | None) -> dict[str, Any]:
    """The mapping in the `--config` file (empty without one); a usage error naming the
    problem for a missing file, invalid YAML or a non-mapping."""
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


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`--param KEY=VALUE` options as a dict, each VALUE read as YAML (numbers, lists...)."""
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


def capsule_and_params(
    capsule: str | None, param: list[str] | None, ccap: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Capsule name from --capsule or the config's capsule.name; the config's params apply
    only to the capsule the config names, and --param values override them."""
    name = capsule or ccap.get("name")
    if not name:
        raise typer.BadParameter(
            "give --capsule (or capsule.name in --config)", param_hint="--capsule"
        )
    if name == ccap.get("name"):
        return name, {**(ccap.get("params") or {}), **parse_params(param)}
    return name, parse_params(param)


def pick(cli_value: Any, section: dict[str, Any], key: str, default: Any) -> Any:
    """The command-line value if given, else the config section's `key`, else `default`."""
    if cli_value is not None:
        return cli_value
    return section.get(key, default)


def project_path(
    cli_value: Path | str | None,
    config: Path | None,
    section: dict[str, Any],
    key: str,
    default: str,
) -> Path:
    """Where a command reads or writes: the command-line value as given (relative to the
    working directory); else the config section's `key`, else `default`, taken relative to
    the project folder, the folder of `--config` (as `idf init` lays it out: results/,
    models/, data/ beside config.yaml); relative to the working directory without a config."""
    if cli_value is not None:
        return Path(cli_value)
    value = section.get(key, default)
    if not isinstance(value, str | Path) or not str(value).strip():
        raise typer.BadParameter(f"{key} must be a path, got {value!r}", param_hint="--config")
    path = Path(value).expanduser()
    if path.is_absolute() or config is None:
        return path
    return config.parent / path


def leaf_arrays(tree: Any) -> dict[str, np.ndarray]:
    """The leaves of a pytree as arrays named by their paths (`x`, `x_a`, `x_0`...)."""
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


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """`arrays` as a compressed NPZ file at `path`, atomically."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def save_figure(fig: Figure, path: Path) -> None:
    """`fig` as a PNG at `path`, atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def save_trace(trace: Any, out: Path, *, plots: bool = True) -> list[Path]:
    """Write samples.npz (+ samples.nc via ArviZ when installed) and PNG plots into `out`."""
    import numpy as np

    written = []
    arrays = {f"position_{k}": v for k, v in leaf_arrays(trace.positions).items()}
    arrays["energies"] = np.asarray(trace.energies)
    for k, v in trace.stats.items():
        arrays[f"stats_{k}"] = np.asarray(v)
    npz = out / "samples.npz"
    save_npz(npz, arrays)
    written.append(npz)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz as az
    except ImportError:
        az = None
    if az is not None:
        posterior = dict(leaf_arrays(trace.positions))
        idata = az.from_dict(
            posterior=posterior, sample_stats={"energy": np.asarray(trace.energies)}
        )
        nc = out / "samples.nc"
        atomic_write(nc, lambda tmp: idata.to_netcdf(tmp))
        written.append(nc)
    if plots:
        written += _plot_energies(np.asarray(trace.energies), out)
    return written


def _plot_energies(e: np.ndarray, out: Path) -> list[Path]:
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
    save_figure(fig, p)
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
        save_figure(fig, p)
        plt.close(fig)
        paths.append(p)
    return paths
