"""Search spaces: `Real`, `Int`, `Choice`, and their encoding into a continuous box.

An evolution strategy moves a point z in R^d; a `Space` maps it to named parameters.
Every coordinate is first folded into [0, 1] by reflection (a triangle wave:
u = 1 - |(z mod 2) - 1|), so the map is continuous everywhere, has no flat plateau
outside the box and a strategy's mean can wander without losing the gradient signal.
Then, per dimension:

- `Real(lo, hi)`: lo + u (hi - lo); `Real(lo, hi, log=True)`: exp(log lo + u log(hi/lo)).
- `Int(lo, hi)` (both inclusive): the (log-)affine map onto [lo - 0.5, hi + 0.5], rounded
  and clipped, so every integer owns an equal share of the box (an equal share of the
  log-box with `log=True`).
- `Choice(options)`: one coordinate cut into len(options) equal bins (the default,
  `encoding="index"`, like an `Int`), or with `encoding="onehot"` one coordinate per
  option (logits; the argmax is chosen, so no option sits "between" two others). The
  index is the default because it searched better in what was measured
  (benchmarks/README.md, evolve, 2026-12-04): one-hot logits add a coordinate per option
  (13 instead of 8 on the benchmark's mixed space) and, once CMA-ES's spread has shrunk,
  the logits of a wrong option can stay ahead on a flat fitness (no signal tells the
  strategy to move them), which left seed 1 of that benchmark at a wrong option.

A JAX fitness receives a dict of arrays: reals as float32, ints as int32, a `Choice` as
the option itself when every option is a number (float32 / int32 / bool), else as the
int32 index into `options`. Host (callback) fitness functions and `EvolveResult`
receive Python values (`float`, `int`, the option object).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import ArgumentError

__all__ = ["Choice", "Int", "Real", "Space", "as_space"]


def _number(name: str, what: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ArgumentError(name, f"{name}: {what} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ArgumentError(name, f"{name}: {what} must be finite, got {v!r}")
    return f


@dataclasses.dataclass(frozen=True)
class Real:
    """A real parameter in [lo, hi] (log-uniformly spread with `log=True`, then lo > 0)."""

    lo: float
    hi: float
    log: bool = False

    def check(self, name: str) -> None:
        lo, hi = _number(name, "lo", self.lo), _number(name, "hi", self.hi)
        if not lo < hi:
            raise ArgumentError(name, f"{name}: Real needs lo < hi, got lo={lo!r}, hi={hi!r}")
        if self.log and lo <= 0:
            raise ArgumentError(name, f"{name}: Real(log=True) needs lo > 0, got lo={lo!r}")

    @property
    def width(self) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer parameter in [lo, hi], both inclusive (`log=True`: log-spread, lo >= 1)."""

    lo: int
    hi: int
    log: bool = False

    def check(self, name: str) -> None:
        for what, v in (("lo", self.lo), ("hi", self.hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ArgumentError(name, f"{name}: Int {what} must be an integer, got {v!r}")
        if not self.lo < self.hi:
            raise ArgumentError(
                name, f"{name}: Int needs lo < hi, got lo={self.lo!r}, hi={self.hi!r}"
            )
        if self.log and self.lo < 1:
            raise ArgumentError(name, f"{name}: Int(log=True) needs lo >= 1, got lo={self.lo!r}")

    @property
    def width(self) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `options` (any Python values; numbers reach a JAX fitness as themselves).

    `encoding`: "onehot" (one coordinate per option, the argmax wins: no option sits
    between two others) or "index" (one coordinate cut into len(options) equal bins, like
    an `Int`: fewer coordinates, but the options get an order).
    """

    options: Sequence[Any]
    encoding: str = "index"

    def check(self, name: str) -> None:
        if isinstance(self.options, (str, bytes)) or not isinstance(self.options, Sequence):
            raise ArgumentError(
                name, f"{name}: Choice needs a list of options, got {self.options!r}"
            )
        if len(self.options) == 0:
            raise ArgumentError(name, f"{name}: Choice needs at least one option, got []")
        if self.encoding not in ("onehot", "index"):
            raise ArgumentError(
                name, f"{name}: Choice encoding must be 'onehot' or 'index', got {self.encoding!r}"
            )

    @property
    def width(self) -> int:
        return len(self.options) if self.encoding == "onehot" else 1

    @property
    def numeric(self) -> bool:
        return all(isinstance(o, (bool, int, float, np.integer, np.floating)) for o in self.options)


Dimension = Real | Int | Choice


def _fold(z):
    """Reflect R onto [0, 1]: a triangle wave of period 2 (identity on [0, 1])."""
    return 1.0 - jnp.abs(jnp.mod(z, 2.0) - 1.0)


class Space:
    """Named dimensions and the map from a point of R^d to their values.

    `dim` is the length of the encoded vector; `decode(z)` (traceable, one point) gives
    the dict of arrays a JAX fitness reads; `to_python(values)` turns one decoded point
    into Python values; `centre()` is the point the search starts from (the middle of
    every range, all options equally likely).
    """

    def __init__(self, dims: Mapping[str, Dimension]):
        if not isinstance(dims, Mapping):
            raise ArgumentError(
                "space", f"space must map names to Real / Int / Choice, got {type(dims).__name__}"
            )
        if not dims:
            raise ArgumentError("space", "space must name at least one parameter, got {}")
        for name, d in dims.items():
            if not isinstance(name, str) or not name:
                raise ArgumentError("space", f"space keys must be non-empty strings, got {name!r}")
            if not isinstance(d, (Real, Int, Choice)):
                raise ArgumentError(
                    name, f"{name}: expected Real, Int or Choice, got {type(d).__name__}"
                )
            d.check(name)
        self.dims: dict[str, Dimension] = dict(dims)
        self._slices: dict[str, slice] = {}
        i = 0
        for name, d in self.dims.items():
            self._slices[name] = slice(i, i + d.width)
            i += d.width
        self.dim = i

    def centre(self) -> Float[Array, " dim"]:
        return jnp.full((self.dim,), 0.5, jnp.float32)

    def encode(self, values: Mapping[str, Any]) -> Float[Array, " dim"]:
        """A point of the box that decodes to `values` (names not given: the centre).

        Reals and ints map to their (log-)affine position, a `Choice` to the middle of
        its option's bin (one-hot: logits 0.6 for the option and 0.4 for the others).
        Values outside a range raise `ArgumentError`.
        """
        unknown = sorted(set(values) - set(self.dims))
        if unknown:
            raise ArgumentError("start", f"start names unknown parameters {unknown}")
        z = np.full((self.dim,), 0.5, np.float64)
        for name, v in values.items():
            d, s = self.dims[name], self._slices[name]
            if isinstance(d, Choice):
                matches = [i for i, o in enumerate(d.options) if o == v]
                if not matches:
                    raise ArgumentError(name, f"{name}: {v!r} is not one of {list(d.options)}")
                if d.encoding == "index":
                    z[s] = (matches[0] + 0.5) / len(d.options)
                else:
                    z[s] = 0.4
                    z[s.start + matches[0]] = 0.6
                continue
            x = _number(name, "the value", v)
            lo, hi = (d.lo, d.hi) if isinstance(d, Real) else (d.lo - 0.5, d.hi + 0.5)
            if not d.lo <= x <= d.hi:
                raise ArgumentError(name, f"{name}: {v!r} is outside [{d.lo}, {d.hi}]")
            if d.log:
                u = (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
            else:
                u = (x - lo) / (hi - lo)
            z[s] = min(max(u, 0.0), 1.0)
        return jnp.asarray(z, jnp.float32)

    def decode(self, z: Float[Array, " dim"]) -> dict[str, Array]:
        """The parameters at one encoded point `z` (traceable: arrays, no Python values)."""
        u = _fold(jnp.asarray(z, jnp.float32))
        out: dict[str, Array] = {}
        for name, d in self.dims.items():
            s = u[self._slices[name]]
            if isinstance(d, Real):
                lo, hi = float(d.lo), float(d.hi)
                if d.log:
                    out[name] = jnp.exp(math.log(lo) + s[0] * (math.log(hi) - math.log(lo)))
                else:
                    out[name] = lo + s[0] * (hi - lo)
                out[name] = jnp.clip(out[name], lo, hi)
            elif isinstance(d, Int):
                lo, hi = d.lo - 0.5, d.hi + 0.5
                if d.log:
                    v = jnp.exp(math.log(lo) + s[0] * (math.log(hi) - math.log(lo)))
                else:
                    v = lo + s[0] * (hi - lo)
                out[name] = jnp.clip(jnp.round(v), d.lo, d.hi).astype(jnp.int32)
            else:
                if d.encoding == "index":
                    k = len(d.options)
                    idx = jnp.clip(jnp.floor(s[0] * k), 0, k - 1).astype(jnp.int32)
                else:
                    idx = jnp.argmax(s).astype(jnp.int32)
                if d.numeric:
                    table = np.asarray(d.options)
                    if table.dtype.kind == "f":
                        table = table.astype(np.float32)
                    elif table.dtype.kind in "iu":
                        table = table.astype(np.int32)
                    out[name] = jnp.asarray(table)[idx]
                else:
                    out[name] = idx
        return out

    def decode_batch(self, z: Float[Array, "pop dim"]) -> dict[str, Array]:
        return jax.vmap(self.decode)(z)

    def to_python(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """One decoded point (arrays) as Python values: float, int, or the option itself."""
        out: dict[str, Any] = {}
        for name, d in self.dims.items():
            v = np.asarray(values[name])
            if isinstance(d, Real):
                out[name] = float(v)
            elif isinstance(d, Int):
                out[name] = int(v)
            elif d.numeric:  # the nearest option (float32 rounding of the table)
                dist = np.abs(np.asarray(d.options, np.float64) - np.float64(v))
                out[name] = d.options[int(np.argmin(dist))]
            else:
                out[name] = d.options[int(v)]
        return out

    def to_python_batch(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        host = {k: np.asarray(v) for k, v in values.items()}
        n = next(iter(host.values())).shape[0]
        return [self.to_python({k: v[i] for k, v in host.items()}) for i in range(n)]

    def describe(self) -> dict[str, Any]:
        """The space as JSON-friendly data (for presets' provenance)."""
        out: dict[str, Any] = {}
        for name, d in self.dims.items():
            if isinstance(d, Choice):
                out[name] = {
                    "choice": [o if isinstance(o, (int, float, str)) else str(o) for o in d.options]
                }
                if d.encoding != "index":
                    out[name]["encoding"] = d.encoding
            else:
                out[name] = {type(d).__name__.lower(): [d.lo, d.hi], "log": d.log}
        return out


def as_space(space: Space | Mapping[str, Dimension]) -> Space:
    """`space` as a `Space` (a mapping of names to dimensions is checked and wrapped)."""
    return space if isinstance(space, Space) else Space(space)
