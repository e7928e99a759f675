"""IPython magics: `%load_ext idf_jax` registers `%idf_visualize` and `%idf_simulate`.

    %idf_visualize trace                 energy per draw and 2-D trajectories of a Trace
    %idf_visualize capsule --3d          energy landscape (surface) of a Capsule or energy fn
    %idf_visualize molecule              atoms in 3-D (Molecule, ase.Atoms, (n, 3) array, .xyz)
    %idf_visualize trace --animate a.gif  an animation (trajectories, or a rotating view)
    %idf_simulate system.xyz --timesteps 1000 --temperature 0.1 --output traj.xyz

Figures are displayed inline and returned; `--out FILE` saves a PNG, `--animate FILE`
writes a GIF (Pillow) or MP4 (ffmpeg). Simulation runs underdamped Langevin dynamics
(BAOAB, `idf.underdamped_langevin`) from the file's coordinates under a capsule's energy
(default: `molecular.lennard_jones_cluster` with n = number of atoms, reduced units) and
stores the `Trace` in the user namespace (`--var`, default `idf_sim`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .._io import atomic_write, atomic_write_bytes

__all__ = ["IDFMagics", "load_ipython_extension", "read_xyz", "write_xyz"]

# Covalent radii (angstrom) for bond drawing: Cordero et al., Dalton Trans. 2008.
_RADII = {
    "H": 0.31,
    "C": 0.76,
    "N": 0.71,
    "O": 0.66,
    "F": 0.57,
    "P": 1.07,
    "S": 1.05,
    "Cl": 1.02,
    "Br": 1.20,
    "I": 1.39,
    "Si": 1.11,
    "B": 0.84,
}


def read_xyz(path: str) -> tuple[list[str], np.ndarray]:
    """Read the first frame of an XYZ file: (element symbols, positions (n, 3))."""
    if not os.path.isfile(path):
        raise ValueError(f"XYZ file {path!r} does not exist")
    with open(path) as fh:
        lines = fh.read().splitlines()
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError) as e:
        raise ValueError(f"{path}: the first line must be the number of atoms") from e
    if n < 1 or len(lines) < n + 2:
        raise ValueError(f"{path}: declares {n} atoms but has {max(len(lines) - 2, 0)} atom lines")
    symbols, pos = [], []
    for i, line in enumerate(lines[2 : n + 2], start=3):
        parts = line.split()
        try:
            symbols.append(parts[0])
            pos.append([float(v) for v in parts[1:4]])
        except (IndexError, ValueError) as e:
            raise ValueError(f"{path}:{i}: expected 'symbol x y z', got {line!r}") from e
        if len(pos[-1]) != 3:
            raise ValueError(f"{path}:{i}: expected 'symbol x y z', got {line!r}")
    x = np.asarray(pos, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: non-finite coordinates")
    return symbols, x


def write_xyz(
    path: str, symbols: list[str], frames: np.ndarray, comments: list[str] | None = None
) -> None:
    """Write frames (f, n, 3) or one frame (n, 3) as a (multi-frame) XYZ file, atomically."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    out = []
    for f, x in enumerate(frames):
        out.append(str(len(symbols)))
        out.append(comments[f] if comments else f"frame {f}")
        out += [f"{s} {a:.8f} {b:.8f} {c:.8f}" for s, (a, b, c) in zip(symbols, x)]
    atomic_write_bytes(path, ("\n".join(out) + "\n").encode())


def _plt():
    import matplotlib

    if "ipykernel" not in str(matplotlib.get_backend()).lower() and not os.environ.get(
        "MPLBACKEND"
    ):
        try:
            from IPython import get_ipython

            ip = get_ipython()
            if ip is None or "IPKernelApp" not in getattr(ip, "config", {}):
                matplotlib.use("Agg")
        except Exception:  # noqa: BLE001
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _parse_params(items) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _as_molecule(obj: Any) -> tuple[list[str], np.ndarray] | None:
    """(symbols, positions) for molecule-like objects, else None."""
    if isinstance(obj, str):
        return read_xyz(obj) if obj.endswith(".xyz") else None
    if hasattr(obj, "get_positions") and hasattr(obj, "get_chemical_symbols"):  # ase.Atoms
        return list(obj.get_chemical_symbols()), np.asarray(obj.get_positions())
    pos = getattr(obj, "positions", None)
    if pos is not None and np.ndim(pos) == 2 and np.shape(pos)[-1] == 3:
        syms = getattr(obj, "elements", None) or getattr(obj, "symbols", None)
        syms = list(syms) if syms is not None else ["X"] * np.shape(pos)[0]
        return syms, np.asarray(pos, dtype=float)
    if hasattr(obj, "shape") and np.ndim(obj) == 2 and np.shape(obj)[-1] == 3 and not callable(obj):
        return ["X"] * np.shape(obj)[0], np.asarray(obj, dtype=float)
    return None


def _bonds(symbols, x) -> list[tuple[int, int]]:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    if all(s in _RADII for s in symbols):
        r = np.asarray([_RADII[s] for s in symbols])
        cut = 1.2 * (r[:, None] + r[None])
    else:  # reduced units: bond at up to 1.25 x the nearest-neighbour distance
        nn = np.min(d + np.eye(len(x)) * 1e9, axis=1) if len(x) > 1 else np.ones(1)
        cut = 1.25 * np.minimum(nn[:, None], nn[None])
    i, j = np.nonzero(np.triu(d <= cut, 1))
    return list(zip(i.tolist(), j.tolist()))


def _draw_molecule(ax, symbols, x):
    colors = {
        "H": "#dddddd",
        "C": "#444444",
        "N": "#3050f8",
        "O": "#ff0d0d",
        "S": "#ffff30",
        "P": "#ff8000",
        "F": "#90e050",
        "Cl": "#1ff01f",
    }
    for i, j in _bonds(symbols, x):
        ax.plot(*zip(x[i], x[j]), color="0.5", lw=1.5)
    ax.scatter(
        x[:, 0],
        x[:, 1],
        x[:, 2],
        s=120,
        depthshade=True,
        edgecolors="k",
        c=[colors.get(s, "#1f77b4") for s in symbols],
    )
    span = np.ptp(x, axis=0).max() / 2 or 1.0
    c = x.mean(0)
    ax.set_xlim(c[0] - span, c[0] + span)
    ax.set_ylim(c[1] - span, c[1] + span)
    ax.set_zlim(c[2] - span, c[2] + span)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")


def _save_animation(fig, update, frames: int, path: str, fps: int = 15) -> str:
    from matplotlib import animation

    anim = animation.FuncAnimation(fig, update, frames=frames, blit=False)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        writer = animation.PillowWriter(fps=fps)
    elif ext == ".mp4":
        if not animation.writers.is_available("ffmpeg"):
            raise ValueError("writing .mp4 needs ffmpeg on PATH; use a .gif path instead")
        writer = animation.FFMpegWriter(fps=fps)
    else:
        raise ValueError(f"--animate expects a .gif or .mp4 path, got {path!r}")

    def write(tmp: str) -> None:
        # the writers pick the format from the file name: save under `ext`, then move
        named = tmp + ext
        try:
            anim.save(named, writer=writer)
            os.replace(named, tmp)
        finally:
            if os.path.exists(named):
                os.unlink(named)

    atomic_write(path, write)
    return path


def _energy_grid(energy_fn, center: np.ndarray, span: float, n: int = 80):
    """E on a grid over the first two coordinates around `center` (others held fixed)."""
    import jax
    import jax.numpy as jnp

    flat = jnp.asarray(center, dtype=jnp.float32).ravel()
    g = np.linspace(-span, span, n)
    X, Y = np.meshgrid(g + float(flat[0]), g + float(flat[1]))
    pts = jnp.tile(flat, (n * n, 1))
    pts = pts.at[:, 0].set(X.ravel()).at[:, 1].set(Y.ravel())
    shape = np.shape(center)
    E = jax.vmap(lambda p: energy_fn(p.reshape(shape)))(pts)
    return X, Y, np.asarray(E).reshape(n, n)


@magics_class
class IDFMagics(Magics):
    """`%idf_visualize` and `%idf_simulate`."""

    def _user_ns(self) -> dict[str, Any]:
        if self.shell is None:
            raise RuntimeError("the idf magics need an IPython shell (%load_ext idf_jax)")
        return self.shell.user_ns

    def _lookup(self, name: str, params: dict):
        ns = self._user_ns()
        if name in ns:
            return ns[name]
        if name.endswith(".xyz"):
            return name
        import capsules

        if name in capsules.registry():
            return capsules.make(name, **params)
        raise ValueError(f"{name!r} is neither a variable, an .xyz file nor a registered capsule")

    @magic_arguments()
    @argument(
        "target",
        help="a Trace, Capsule, energy function, molecule, (n,3) array, .xyz path or capsule name",
    )
    @argument("--3d", dest="three_d", action="store_true", help="3-D view (surface, trajectory)")
    @argument("--animate", metavar="FILE", default=None, help="write an animation (.gif or .mp4)")
    @argument("--out", metavar="FILE", default=None, help="save the figure as PNG")
    @argument("--span", type=float, default=3.0, help="half-width of the landscape grid")
    @argument("--frames", type=int, default=60, help="frames of an animation")
    @argument("--chains", type=int, default=8, help="chains drawn for a Trace")
    @argument("--param", action="append", help="capsule parameter KEY=VALUE (capsule names)")
    @line_magic
    def idf_visualize(self, line):
        """Plot energy landscapes, sampling trajectories or molecules in 3-D."""
        args = parse_argstring(self.idf_visualize, line)
        if args.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        obj = self._lookup(args.target, _parse_params(args.param))
        plt = _plt()
        from ..run import Trace

        mol = None if isinstance(obj, Trace) else _as_molecule(obj)
        if isinstance(obj, Trace):
            fig = self._trace(obj, args, plt)
        elif mol is not None:
            fig = self._molecule(*mol, args, plt)
        elif hasattr(obj, "energy_fn") or callable(obj):
            fig = self._landscape(obj, args, plt)
        else:
            raise ValueError(f"cannot visualize a {type(obj).__name__}")
        if args.out:
            fig.savefig(args.out, format="png", dpi=110)
        self._show(fig)
        return fig

    def _show(self, fig):
        try:
            from IPython.display import display

            display(fig)
        except Exception:  # noqa: BLE001 - display is best effort outside notebooks
            pass

    def _trace(self, trace, args, plt):
        import jax

        e = np.asarray(trace.energies)
        leaf = np.asarray(jax.tree.leaves(trace.positions)[0])
        c = min(args.chains, e.shape[0])
        is_mol = leaf.ndim == 4 and leaf.shape[-1] == 3
        three = args.three_d or is_mol
        fig = plt.figure(figsize=(11, 4.5))
        ax_e = fig.add_subplot(1, 2, 1)
        for k in range(c):
            ax_e.plot(e[k], lw=0.8)
        ax_e.set_xlabel("draw")
        ax_e.set_ylabel("energy")
        ax_e.set_title(f"energy ({c} of {e.shape[0]} chains)")
        flat = leaf.reshape(leaf.shape[0], leaf.shape[1], -1)
        if is_mol:
            ax = fig.add_subplot(1, 2, 2, projection="3d")
            _draw_molecule(ax, ["X"] * leaf.shape[2], leaf[0, -1])
            ax.set_title("chain 0, last draw")
        elif three and flat.shape[-1] >= 3:
            ax = fig.add_subplot(1, 2, 2, projection="3d")
            for k in range(c):
                ax.plot(flat[k, :, 0], flat[k, :, 1], flat[k, :, 2], lw=0.7)
            ax.set_title("trajectories (first three coordinates)")
        elif flat.shape[-1] >= 2:
            ax = fig.add_subplot(1, 2, 2)
            for k in range(c):
                ax.plot(flat[k, :, 0], flat[k, :, 1], lw=0.7, alpha=0.8)
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1]")
            ax.set_title("trajectories (first two coordinates)")
        else:
            ax = fig.add_subplot(1, 2, 2)
            ax.hist(flat[:, :, 0].ravel(), bins=50, density=True)
            ax.set_title("x[0] distribution")
        fig.tight_layout()
        if args.animate:
            draws = e.shape[1]
            step = max(1, draws // max(args.frames, 1))
            frames = list(range(1, draws + 1, step))
            if is_mol:

                def update(i):
                    ax.cla()
                    _draw_molecule(ax, ["X"] * leaf.shape[2], leaf[0, frames[i] - 1])
                    ax.set_title(f"chain 0, draw {frames[i]}")
            else:
                marks = [ax.plot([], [], "o", ms=4)[0] for _ in range(c)] if not three else []

                def update(i):
                    d = frames[i] - 1
                    if three:
                        ax.view_init(elev=25, azim=(360 * i / len(frames)))
                        return
                    for k, m in enumerate(marks):
                        m.set_data([flat[k, d, 0]], [flat[k, d, 1]])
                    ax_e.set_xlim(0, max(frames[i], 2))

            _save_animation(fig, update, len(frames), args.animate)
        return fig

    def _landscape(self, obj, args, plt):
        import jax

        if hasattr(obj, "energy_fn"):
            energy_fn = obj.energy_fn
            center = np.asarray(jax.tree.leaves(obj.init(jax.random.key(0), 1))[0][0])
            title = getattr(obj, "name", "capsule")
        else:
            energy_fn, center, title = obj, np.zeros(2), getattr(obj, "__name__", "energy")
        if center.size < 2:
            raise ValueError("an energy landscape needs at least two coordinates")
        span = args.span if not hasattr(obj, "energy_fn") else args.span
        X, Y, E = _energy_grid(energy_fn, center if hasattr(obj, "energy_fn") else center, span)
        finite = np.isfinite(E)
        if not finite.any():
            raise ValueError("the energy is not finite anywhere on the grid")
        Ec = np.where(finite, E, np.nanmax(np.where(finite, E, np.nan)))
        Ec = np.minimum(Ec, np.quantile(Ec, 0.95))  # clip walls so the basin shows
        fig = plt.figure(figsize=(6.5, 5))
        if args.three_d or args.animate:
            ax = fig.add_subplot(1, 1, 1, projection="3d")
            ax.plot_surface(X, Y, Ec, cmap="viridis", linewidth=0, antialiased=True)
            ax.set_zlabel("energy")
        else:
            ax = fig.add_subplot(1, 1, 1)
            cs = ax.contourf(X, Y, Ec, levels=30, cmap="viridis")
            fig.colorbar(cs, ax=ax, label="energy")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.set_title(f"{title}: energy over the first two coordinates")
        if args.animate:
            n = max(args.frames, 1)
            _save_animation(fig, lambda i: ax.view_init(elev=30, azim=360 * i / n), n, args.animate)
        return fig

    def _molecule(self, symbols, x, args, plt):
        fig = plt.figure(figsize=(6, 6))
        ax = fig.add_subplot(1, 1, 1, projection="3d")
        _draw_molecule(ax, symbols, x)
        ax.set_title(f"{len(symbols)} atoms")
        if args.animate:
            n = max(args.frames, 1)
            _save_animation(fig, lambda i: ax.view_init(elev=20, azim=360 * i / n), n, args.animate)
        return fig

    @magic_arguments()
    @argument("path", help="XYZ file with the starting coordinates")
    @argument("--timesteps", type=int, default=1000, help="integration steps")
    @argument("--dt", type=float, default=0.005, help="time step (capsule time units)")
    @argument("--temperature", type=float, default=0.1, help="kT (capsule energy units)")
    @argument("--friction", type=float, default=1.0, help="Langevin friction (1 / time)")
    @argument("--every", type=int, default=10, help="record one frame every N steps")
    @argument(
        "--capsule",
        default="molecular.lennard_jones_cluster",
        help="energy: a registered capsule whose state is (n_atoms, 3)",
    )
    @argument(
        "--param",
        action="append",
        help="capsule parameter KEY=VALUE (n defaults to the atom count)",
    )
    @argument("--seed", type=int, default=0)
    @argument("--output", default=None, help="write the trajectory as multi-frame XYZ")
    @argument("--var", default="idf_sim", help="user variable that receives the Trace")
    @line_magic
    def idf_simulate(self, line):
        """Langevin dynamics (BAOAB) of the atoms in an XYZ file under a capsule's energy."""
        import jax
        import jax.numpy as jnp

        import capsules

        from ..run import sample
        from ..samplers import underdamped_langevin

        args = parse_argstring(self.idf_simulate, line)
        if args.timesteps < 1 or args.every < 1 or args.timesteps % args.every:
            raise ValueError("--timesteps must be >= 1 and a multiple of --every")
        symbols, x = read_xyz(args.path)
        params = _parse_params(args.param)
        reg = capsules.registry()
        if args.capsule not in reg:
            raise ValueError(f"unknown capsule {args.capsule!r}; known: {', '.join(reg) or 'none'}")
        if "n" in reg[args.capsule].parameters and "n" not in params:
            params["n"] = len(symbols)
        cap = capsules.make(args.capsule, **params)
        want = jax.eval_shape(lambda k: cap.init(k, 1), jax.random.key(0))
        leaves = jax.tree.leaves(want)
        if len(leaves) != 1 or tuple(leaves[0].shape[1:]) != x.shape:
            raise ValueError(
                f"capsule {args.capsule} has states shaped {[l.shape[1:] for l in leaves]}, "
                f"the file has {x.shape} coordinates"
            )
        sampler = underdamped_langevin(cap.energy_fn, args.dt, args.friction, args.temperature)
        x0 = jnp.asarray(x, dtype=leaves[0].dtype)[None]
        trace = sample(sampler, jax.random.key(args.seed), x0, args.timesteps, thin=args.every)
        e = np.asarray(trace.energies)[0]
        self._user_ns()[args.var] = trace
        if args.output:
            frames = np.asarray(trace.positions)[0]
            write_xyz(
                args.output,
                symbols,
                frames,
                [f"step {(k + 1) * args.every} energy {e[k]:.8f}" for k in range(len(e))],
            )
        e0 = float(cap.energy_fn(jnp.asarray(x, dtype=leaves[0].dtype)))
        print(
            f"{args.capsule}: {len(symbols)} atoms, {args.timesteps} steps of dt={args.dt} at "
            f"kT={args.temperature}; energy {e0:.6g} -> {e[-1]:.6g} (min {e.min():.6g}); "
            f"trace in `{args.var}`" + (f", trajectory in {args.output}" if args.output else "")
        )
        return trace


def load_ipython_extension(ipython) -> None:
    """Called by `%load_ext idf_jax`."""
    ipython.register_magics(IDFMagics)
