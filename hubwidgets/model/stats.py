"""Weight statistics: ``weight_stats``.

Variables in host memory (the CPU) are read in place and reduced all at once by
``host_stats`` (a compiled kernel over every variable, on all cores; numpy where it could
not be compiled).  Variables elsewhere (a GPU) are reduced where they live
(``tf.device(variable.device)``) by one ``tf.function`` per dtype, traced once for any shape
(a flat ``[None]`` signature), so hundreds of variables cost one trace; only the scalars and
the bin counts come back to the host.  Those results are cached per variable, keyed by a
checksum of its bits computed on the device in one cheap pass, so a changed value is never
served stale.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOAT_KINDS = ("float16", "bfloat16", "float32", "float64")
INT_KINDS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


class NonFiniteWeightsWarning(UserWarning):
    """Some weights are NaN or Inf."""


@dataclass
class WeightStats:
    """Statistics of one variable.  Fields that do not apply to its dtype are ``None``.

    ``counts`` / ``edges`` follow ``numpy.histogram``: ``len(edges) == len(counts) + 1``,
    NaN/Inf are left out, and so are values outside ``value_range`` when one is given.
    """

    path: str
    dtype: str
    shape: tuple[int | None, ...]
    count: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    l2_norm: float | None = None
    zero_fraction: float | None = None
    nan_count: int = 0
    inf_count: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    device: str = ""
    replicas: list["WeightStats"] = field(default_factory=list, repr=False)

    @property
    def has_nonfinite(self) -> bool:
        return bool(self.nan_count or self.inf_count)

    @property
    def replicas_agree(self) -> bool:
        """For a mirrored variable: whether every replica holds the same statistics (they
        should; a difference means the replicas drifted apart).  True otherwise."""
        first = self.replicas[0]._summary() if self.replicas else None
        return all(r._summary() == first for r in self.replicas)

    def _summary(self) -> tuple:
        return (self.count, self.mean, self.std, self.min, self.max, self.nan_count,
                self.inf_count, tuple(self.counts.tolist()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of arrays)."""
        out = {k: getattr(self, k) for k in (
            "path", "dtype", "count", "mean", "std", "min", "max", "l2_norm",
            "zero_fraction", "nan_count", "inf_count", "device")}
        out["shape"] = list(self.shape)
        out["counts"] = self.counts.tolist()
        out["edges"] = self.edges.tolist()
        return out


class _Kernels:
    """The traced reductions, one concrete function per (kind, dtype)."""

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, dtype: Any) -> Any:
        key = (kind, dtype.name)
        if key not in self._cache:
            builder = {"float": self._float_stats, "checksum": self._checksum}[kind]
            fn = self.tf.function(builder, reduce_retracing=True, autograph=False)
            spec = [self.tf.TensorSpec([None], dtype), self.tf.TensorSpec([2], self.tf.float64),
                    self.tf.TensorSpec([], self.tf.bool), self.tf.TensorSpec([], self.tf.int32)]
            spec = spec if kind == "float" else spec[:1]
            self._cache[key] = fn.get_concrete_function(*spec)
        return self._cache[key]

    def _float_stats(self, x: Any, value_range: Any, fixed_range: Any, bins: Any) -> Any:
        """count, nan, inf, zeros, sum, sum of squares, min, max (finite values), histogram."""
        tf = self.tf
        x = tf.cast(x, tf.float64) if x.dtype != tf.float64 else x
        finite = tf.math.is_finite(x)
        nan = tf.reduce_sum(tf.cast(tf.math.is_nan(x), tf.int64))
        n = tf.size(x, out_type=tf.int64)
        n_finite = tf.reduce_sum(tf.cast(finite, tf.int64))
        inf = n - n_finite - nan
        xf = tf.where(finite, x, tf.zeros_like(x))
        total = tf.reduce_sum(xf)
        mean = total / tf.cast(tf.maximum(n_finite, 1), tf.float64)
        centered = tf.where(finite, x - mean, tf.zeros_like(x))
        var = tf.reduce_sum(centered * centered) / tf.cast(tf.maximum(n_finite, 1), tf.float64)
        sq = tf.reduce_sum(xf * xf)
        zeros = tf.reduce_sum(tf.cast(tf.equal(x, 0), tf.int64))
        big = tf.constant(np.inf, tf.float64)
        lo_data = tf.reduce_min(tf.where(finite, x, big))
        hi_data = tf.reduce_max(tf.where(finite, x, -big))
        lo = tf.where(fixed_range, value_range[0], lo_data)
        hi = tf.where(fixed_range, value_range[1], hi_data)
        # numpy's rule for an empty or constant range
        lo, hi = tf.where(n_finite > 0, lo, 0.0), tf.where(n_finite > 0, hi, 1.0)
        same = tf.equal(lo, hi)
        lo, hi = tf.where(same, lo - 0.5, lo), tf.where(same, hi + 0.5, hi)
        inside = finite & (x >= lo) & (x <= hi)
        # numpy's binning: floor((x - lo) * bins / (hi - lo)), the top edge in the last bin
        scaled = (tf.where(inside, x, lo) - lo) * (tf.cast(bins, tf.float64) / (hi - lo))
        index = tf.clip_by_value(tf.cast(tf.floor(scaled), tf.int32), 0, bins - 1)
        index = tf.where(inside, index, bins)  # an overflow bin for what is left out
        counts = tf.math.bincount(index, minlength=bins + 1, maxlength=bins + 1, dtype=tf.int64)
        scalars = tf.stack([tf.cast(n, tf.float64), tf.cast(nan, tf.float64),
                            tf.cast(inf, tf.float64), tf.cast(zeros, tf.float64), mean,
                            tf.sqrt(var), lo_data, hi_data, tf.sqrt(sq), lo, hi])
        return scalars, counts[:bins]

    def _checksum(self, x: Any) -> Any:
        """Two sums over the raw bits (plain and position-weighted): changes when any bit does."""
        tf = self.tf
        width = x.dtype.size
        bits_type = {1: tf.int8, 2: tf.int16, 4: tf.int32, 8: tf.int64}[width]
        bits = tf.cast(tf.bitcast(x, bits_type), tf.int64) if x.dtype != bits_type else \
            tf.cast(x, tf.int64)
        weight = tf.range(tf.size(bits, out_type=tf.int64), dtype=tf.int64) % 127 + 1
        return tf.stack([tf.reduce_sum(bits), tf.reduce_sum(bits * weight)])


_KERNELS: _Kernels | None = None
_CACHE: dict[tuple, tuple[tuple, WeightStats]] = {}


def _kernels() -> _Kernels:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _Kernels()
    return _KERNELS


def weight_stats(target: Any, bins: int = 64,
                 value_range: tuple[float, float] | None = None) -> dict[str, WeightStats]:
    """Statistics of every variable in ``target``, keyed by variable path.

    ``target`` is a model (anything :func:`hubwidgets.inspect` accepts), a ``ModelTree``, a
    ``Node`` (its whole subtree), a ``VariableInfo``, or a list of these or of variables.
    ``bins`` is the number of histogram bins; ``value_range=(lo, hi)`` fixes the bin edges
    (use it to compare several variables on shared bins).
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"value_range must be two finite numbers (lo, hi) with lo < hi, "
                             f"got {value_range!r}.")
        value_range = (lo, hi)
    results = _stats_of_all(_targets(target), bins, value_range)
    bad = [s.path for s in results.values() if s.has_nonfinite]
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(
            f"NaN or Inf values in {len(bad)} variable(s): {shown}. Training probably diverged "
            "(lower the learning rate, check the inputs) or the weights file is damaged; "
            "reload the weights from a good checkpoint.", NonFiniteWeightsWarning, stacklevel=2)
    return results


def _targets(target: Any) -> list[tuple[str, Any]]:
    from .inspect import inspect
    from .tree import ModelTree, Node, VariableInfo

    if isinstance(target, VariableInfo):
        return [(target.path, target.variable)]
    if isinstance(target, Node):
        return [(v.path, v.variable) for v in target.all_variables()]
    if isinstance(target, ModelTree):
        return [(v.path, v.variable) for v in target.variables()]
    if isinstance(target, (list, tuple)):
        out: list[tuple[str, Any]] = []
        for item in target:
            if isinstance(item, (VariableInfo, Node, ModelTree)):
                out += _targets(item)
            elif hasattr(item, "dtype") and hasattr(item, "shape") and hasattr(item, "assign"):
                out.append((_variable_path(item), item))
            else:
                raise TypeError(f"weight_stats got a {type(item).__name__} in its list; pass "
                                "variables, Nodes or VariableInfos.")
        return _dedupe_paths(out)
    if hasattr(target, "assign") and hasattr(target, "dtype"):
        return [(_variable_path(target), target)]
    return [(v.path, v.variable) for v in inspect(target).variables()]


def _variable_path(v: Any) -> str:
    from .adapters.common import full_name

    return full_name(v)


def _dedupe_paths(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    seen: dict[str, int] = {}
    out = []
    for path, v in items:
        if path in seen:
            seen[path] += 1
            path = f"{path}#{seen[path]}"
        else:
            seen[path] = 0
        out.append((path, v))
    return out


def _stats_of_all(targets: list[tuple[str, Any]], bins: int,
                  value_range: tuple[float, float] | None) -> dict[str, WeightStats]:
    """Statistics of every variable.  Host (CPU) variables are reduced all at once
    (host_stats); the rest one by one on their devices.  A mirrored variable's statistics
    are computed on each replica's device, and the first replica's stand for the variable."""
    from .adapters.common import replica_components
    from .host_stats import host_array, host_reductions

    parts = [(path, replica_components(var)) for path, var in targets]
    components = [c for _, replicas in parts for c in replicas]
    host = iter(host_reductions([host_array(c) for c in components], bins, value_range))
    results = {}
    for path, replicas in parts:
        per_replica = []
        for c in replicas:
            reduction = next(host)
            per_replica.append(_stats_on_device(path, c, bins, value_range) if reduction is None
                               else _from_reduction(path, c, c.dtype.name, reduction))
        main = per_replica[0]
        if len(per_replica) > 1:
            main = dataclasses.replace(main, replicas=per_replica,
                                       device=", ".join(r.device for r in per_replica))
        results[path] = main
    return results


def _from_reduction(path: str, var: Any, dtype: str, r: Any) -> WeightStats:
    """The one place statistics are built, from either path's numbers."""
    from .adapters.common import shape_tuple

    has_values = r.count - r.nan - r.inf > 0
    return WeightStats(
        path=path, dtype=dtype, shape=shape_tuple(var.shape), count=r.count,
        mean=r.mean if has_values else None, std=r.std if has_values else None,
        min=r.min if has_values else None, max=r.max if has_values else None,
        l2_norm=r.l2 if r.count else 0.0,
        zero_fraction=r.zeros / r.count if r.count else None,
        nan_count=r.nan, inf_count=r.inf, counts=r.counts, edges=r.edges,
        device=str(getattr(var, "device", "") or ""))


def _stats_on_device(path: str, var: Any, bins: int,
                     value_range: tuple[float, float] | None) -> WeightStats:
    """One variable through the TensorFlow kernels, on its own device (cached by checksum,
    as a pass there can be costly)."""
    tf = _kernels().tf
    dtype = tf.as_dtype(var.dtype)
    device = str(getattr(var, "device", "") or "")
    with tf.device(device or None):
        flat = tf.reshape(tf.convert_to_tensor(var), [-1])
        checksum = _checksum(flat, dtype)
        key = (id(var), bins, value_range)
        cached = _CACHE.get(key)
        if cached is not None and checksum is not None and cached[0] == checksum \
                and cached[1].path == path:
            return cached[1]
        stats = _compute(path, var, flat, dtype, bins, value_range)
    if checksum is not None:
        _CACHE[key] = (checksum, stats)
    return stats


def _checksum(flat: Any, dtype: Any) -> tuple | None:
    if dtype.name not in FLOAT_KINDS + INT_KINDS + ("bool",):
        return None
    tf = _kernels().tf
    if dtype == tf.bool:
        flat = tf.cast(flat, tf.int8)
        dtype = tf.int8
    values = _kernels().get("checksum", dtype)(flat).numpy()
    return tuple(int(v) for v in values)


def _compute(path: str, var: Any, flat: Any, dtype: Any, bins: int,
             value_range: tuple[float, float] | None) -> WeightStats:
    from .adapters.common import dtype_name, shape_tuple
    from .host_stats import Reduction

    tf = _kernels().tf
    name = dtype_name(dtype)
    count = int(flat.shape[0])
    if name == "bool":
        flat = tf.cast(flat, tf.float32)
    elif name not in FLOAT_KINDS + INT_KINDS:
        return WeightStats(path=path, dtype=name, shape=shape_tuple(var.shape), count=count,
                           device=str(getattr(var, "device", "") or ""))
    if name in INT_KINDS or name in ("float16", "bfloat16"):
        flat = tf.cast(flat, tf.float64 if name in INT_KINDS else tf.float32)
    fixed = value_range is not None
    rng = tf.constant(value_range if fixed else (0.0, 1.0), tf.float64)
    scalars, counts = _kernels().get("float", flat.dtype)(flat, rng, tf.constant(fixed),
                                                           tf.constant(bins, tf.int32))
    _, nan, inf, zeros, mean, std, lo_data, hi_data, l2, lo, hi = scalars.numpy().tolist()
    reduction = Reduction(count, int(nan), int(inf), int(zeros), mean, std, lo_data, hi_data,
                          l2, counts.numpy().astype(np.int64), np.linspace(lo, hi, bins + 1))
    return _from_reduction(path, var, name, reduction)


def clear_cache() -> None:
    """Forget every cached statistic (they are also recomputed whenever a value changes)."""
    _CACHE.clear()
