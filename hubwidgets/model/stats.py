"""Weight statistics: ``weight_stats``.

Variables in host memory (the CPU) are read in place and reduced all at once by
``host_stats`` (a compiled kernel over every variable, on all cores; numpy where it could
not be compiled).  Variables elsewhere (a GPU) are reduced where they live
(``tf.device(variable.device)``) by one ``tf.function`` per dtype, traced once for any shape
(a flat ``[None]`` signature), so hundreds of variables cost one trace; only the scalars and
the bin counts come back to the host.  No value is cached: a pass on the device costs about
what a checksum of the bits would, and a checksum can collide (two different bfloat16 values
with the same sum served stale statistics), so every call reads the current values; only
what to read (:class:`StatsPlan`) is kept, in the model session's cache until the
structure changes.

Every figure is computed so that it cannot overflow for the input's range (see
``host_stats``); a figure that does not fit in float64, or a histogram numpy could not make,
is ``None`` / empty with the reason in :attr:`WeightStats.missing`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import ArgumentError, NonFiniteWeightsWarning, OutOfDate, ReplicaDriftWarning
from .host_stats import SAFE_MAGNITUDE, histogram_edges

FLOAT_KINDS = ("float16", "bfloat16", "float32", "float64")
INT_KINDS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
MAX_BINS = 10_000
"""The most histogram bins :func:`weight_stats` accepts: counts and edges take 16 bytes per
bin and variable, so 10,000 bins over ResNet50's 320 variables are 51 MB."""


@dataclass
class WeightStats:
    """Statistics of one variable.  Fields that do not apply to its dtype are ``None``.

    ``counts`` / ``edges`` follow ``numpy.histogram``: ``len(edges) == len(counts) + 1``,
    NaN/Inf are left out, and so are values outside ``value_range`` when one is given.
    ``missing`` says why a figure is ``None`` (or the histogram empty), keyed by field name
    (``"mean"``, ``"std"``, ``"min"``, ``"max"``, ``"l2_norm"``, ``"zero_fraction"``,
    ``"histogram"``; ``"count"`` when an uninitialised variable's size is unknown).
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
    missing: dict[str, str] = field(default_factory=dict)

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
        out["missing"] = dict(self.missing)
        out["shape"] = list(self.shape)
        out["counts"] = self.counts.tolist()
        out["edges"] = self.edges.tolist()
        return out


class _Kernels:
    """The traced reductions, one concrete function per dtype."""

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self._cache: dict[str, Any] = {}

    def get(self, dtype: Any) -> Any:
        if dtype.name not in self._cache:
            tf = self.tf
            fn = tf.function(self._float_stats, reduce_retracing=True, autograph=False)
            self._cache[dtype.name] = fn.get_concrete_function(
                tf.TensorSpec([None], dtype), tf.TensorSpec([2], tf.float64),
                tf.TensorSpec([], tf.bool), tf.TensorSpec([], tf.int32))
        return self._cache[dtype.name]

    def _float_stats(self, x: Any, value_range: Any, fixed_range: Any, bins: Any) -> Any:
        """count, nan, inf, zeros, mean, std, min, max (finite values), L2, range; histogram.

        Sums are taken over the values scaled by a power of two when their magnitude lies
        outside ``host_stats.SAFE_MAGNITUDE`` (so nothing overflows), and the histogram
        follows ``numpy.histogram`` step by step: numpy's ``linspace`` edges, its index
        formula, and its one-bin corrections against the edges."""
        tf = self.tf
        f64 = tf.float64
        x = tf.cast(x, f64) if x.dtype != f64 else x
        finite = tf.math.is_finite(x)
        nan = tf.reduce_sum(tf.cast(tf.math.is_nan(x), tf.int64))
        n = tf.size(x, out_type=tf.int64)
        n_finite = tf.reduce_sum(tf.cast(finite, tf.int64))
        inf = n - n_finite - nan
        has = n_finite > 0
        zeros = tf.reduce_sum(tf.cast(tf.equal(x, 0), tf.int64))
        big = tf.constant(np.inf, f64)
        lo_data = tf.reduce_min(tf.where(finite, x, big))
        hi_data = tf.reduce_max(tf.where(finite, x, -big))
        magnitude = tf.where(has, tf.maximum(tf.abs(lo_data), tf.abs(hi_data)), 0.0)
        low, high = SAFE_MAGNITUDE
        scaled = has & (magnitude > 0) & ((magnitude < low) | (magnitude > high))
        exponent = tf.where(scaled, tf.clip_by_value(
            tf.floor(tf.math.log(tf.where(scaled, magnitude, 1.0)) / math.log(2.0)) + 1.0,
            -1000.0, 1000.0), 0.0)
        y = tf.where(finite, x * tf.pow(tf.constant(2.0, f64), -exponent), 0.0)
        count = tf.cast(tf.maximum(n_finite, 1), f64)
        first_mean = tf.reduce_sum(y) / count
        centered = tf.where(finite, y - first_mean, 0.0)
        sum_c = tf.reduce_sum(centered)
        var = tf.maximum(tf.reduce_sum(centered * centered) / count - (sum_c / count) ** 2, 0.0)
        unscale = tf.pow(tf.constant(2.0, f64), exponent)
        mean = (first_mean + sum_c / count) * unscale
        std = tf.sqrt(var) * unscale
        l2 = tf.sqrt(tf.reduce_sum(y * y)) * unscale
        lo = tf.where(fixed_range, value_range[0], tf.where(has, lo_data, 0.0))
        hi = tf.where(fixed_range, value_range[1], tf.where(has, hi_data, 1.0))
        same = tf.equal(lo, hi)
        lo, hi = tf.where(same, lo - 0.5, lo), tf.where(same, hi + 0.5, hi)
        # numpy.linspace(lo, hi, bins + 1)
        bins_f = tf.cast(bins, f64)
        delta = hi - lo
        step = delta / bins_f
        k = tf.range(bins, dtype=f64)
        edges = tf.concat([tf.where(tf.equal(step, 0.0), k / bins_f * delta, k * step) + lo,
                           tf.reshape(hi, [1])], 0)
        # numpy.histogram's binning
        inside = finite & (x >= lo) & (x <= hi)
        v = tf.where(inside, x, lo)
        f = (v - lo) / delta * bins_f
        index = tf.cast(tf.clip_by_value(tf.where(tf.math.is_finite(f), f, 0.0), 0.0, bins_f),
                        tf.int32)
        index = tf.where(tf.equal(index, bins), bins - 1, index)
        index = tf.where(v < tf.gather(edges, index), index - 1, index)
        index = tf.clip_by_value(index, 0, bins - 1)
        index = tf.where((v >= tf.gather(edges, index + 1)) & tf.not_equal(index, bins - 1),
                         index + 1, index)
        index = tf.where(inside, index, bins)  # an overflow bin for what is left out
        counts = tf.math.bincount(index, minlength=bins + 1, maxlength=bins + 1, dtype=tf.int64)
        scalars = tf.stack([tf.cast(n, f64), tf.cast(nan, f64), tf.cast(inf, f64),
                            tf.cast(zeros, f64), mean, std, lo_data, hi_data, l2, lo, hi])
        return scalars, counts[:bins]


_KERNELS: _Kernels | None = None


def _kernels() -> _Kernels:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _Kernels()
    return _KERNELS


def check_bins(bins: Any) -> int:
    """``bins`` as an int, or a ValueError that says what is accepted."""
    if not isinstance(bins, numbers.Integral) or isinstance(bins, (bool, np.bool_)):
        raise ArgumentError(f"bins must be a positive integer (at most {MAX_BINS:,}), got "
                         f"{bins!r} of type {type(bins).__name__}.")
    bins = int(bins)
    if not 1 <= bins <= MAX_BINS:
        raise ArgumentError(f"bins must be a positive integer of at most {MAX_BINS:,} "
                         f"(hubwidgets.model.stats.MAX_BINS), got {bins:,}; each bin costs "
                         "memory for every variable. Use fewer bins.")
    return bins


def check_value_range(value_range: Any, bins: int) -> tuple[float, float] | None:
    """``value_range`` as two floats numpy can cut into ``bins`` bins, or a ValueError."""
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ArgumentError(f"value_range must be two numbers (lo, hi), got {value_range!r}.") \
            from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ArgumentError(f"value_range must be two finite numbers (lo, hi) with lo < hi, "
                         f"got {value_range!r}.")
    edges, reason = histogram_edges(lo, hi, bins)
    if edges is None:
        raise ArgumentError(f"value_range {value_range!r} cannot be used: {reason}.")
    return lo, hi


def weight_stats(target: Any, bins: int = 64,
                 value_range: tuple[float, float] | None = None,
                 effective: bool = False) -> dict[str, WeightStats]:
    """Statistics of every variable in ``target``, keyed by variable path.

    ``target`` is a model (anything :func:`hubwidgets.inspect` accepts), a ``ModelTree``, a
    ``Node`` (its whole subtree), a ``VariableInfo``, or a list of these or of variables.
    ``bins`` is the number of histogram bins, 1 to :data:`MAX_BINS` (10,000; a Python or
    numpy integer); ``value_range=(lo, hi)`` fixes the bin edges (use it to compare several
    variables on shared bins; ``hi - lo`` must be finite in float64).

    Means, standard deviations and L2 norms are computed in float64 without overflow for
    every dtype (integer means exactly); a figure that cannot be given is ``None`` and
    :attr:`WeightStats.missing` says why (an uninitialised variable: its declared size,
    every figure missing).  NaN/Inf values warn (:class:`NonFiniteWeightsWarning`), and so do
    the replicas of a mirrored variable that hold different values
    (:class:`~hubwidgets.model.watch.ReplicaDriftWarning`).
    ``effective=True``: a quantized or LoRA layer's base weight is described by the kernel the
    layer computes with (:func:`hubwidgets.effective_weights`), not its stored codes.
    """
    if effective:  # quantized and LoRA layers: the kernel they compute with (effective.py)
        from .effective import effective_weight_stats

        return effective_weight_stats(target, bins, value_range, reduce=weight_stats)
    bins = check_bins(bins)
    value_range = check_value_range(value_range, bins)

    kept = _kept_plan(target)
    try:
        results = _stats_of_all(*kept, bins, value_range) if kept else None
    except OutOfDate:  # the model's layers changed since: its new tree, and its plan
        results = None
    if results is None:
        results = _stats_of_all(_plan_of(target), None, bins, value_range)
    bad = [s.path for s in results.values() if s.nan_count or s.inf_count]
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(
            f"NaN or Inf values in {len(bad)} variable(s): {shown}. Training probably diverged "
            "(lower the learning rate, check the inputs) or the weights file is damaged; "
            "reload the weights from a good checkpoint.", NonFiniteWeightsWarning, stacklevel=2)
    drifted = [s.path for s in results.values() if s.replicas and not s.replicas_agree]
    if drifted:
        from .notes import BN_STATISTIC_NAMES

        shown = ", ".join(drifted[:5]) + (" ..." if len(drifted) > 5 else "")
        statistics = [p for p in drifted if p.rsplit("/", 1)[-1] in BN_STATISTIC_NAMES]
        why = (" BatchNormalization moving statistics drift when each replica updates them "
               "from its own batches." if statistics else "")
        warnings.warn(
            f"The replicas of {len(drifted)} mirrored variable(s) hold different values: "
            f"{shown}.{why} The figures given are the first replica's (what the model reads "
            "and saves); each replica's are in WeightStats.replicas. Assign the value you want "
            "to the mirrored variable (inside strategy.scope()) to make the copies agree "
            "again.", ReplicaDriftWarning, stacklevel=2)
    return results


def _targets(target: Any) -> list[tuple[str, Any]]:
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
    return [(_variable_path(target), target)]  # one variable (models: _plan_of)


def _variable_path(v: Any) -> str:
    from .adapters.common import full_name

    return full_name(v)


def _dedupe_paths(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Each variable once (a list may reach one variable twice: the same variable, or
    overlapping Nodes); distinct variables of the same name get ``#1``, ``#2``..."""
    from .adapters.common import variable_key

    seen: dict[str, int] = {}
    reached: set[int] = set()
    out = []
    for path, v in items:
        key = variable_key(v)
        if key in reached:
            continue
        reached.add(key)
        if path in seen:
            seen[path] += 1
            path = f"{path}#{seen[path]}"
        else:
            seen[path] = 0
        out.append((path, v))
    return out


@dataclass(frozen=True)
class StatsPlan:
    """A fixed list of variables ready to be reduced: each one's path with the components
    read one by one (a mirrored variable's replicas, see ``replica_components``), and the
    :class:`~hubwidgets.model.host_stats.ReadPlan` of every component in that order.  A
    model's plan is kept in its session's cache until the structure changes (a tree's
    variables never change), so a warm call goes straight to reading."""

    parts: tuple[tuple[str, tuple[Any, ...]], ...]
    reads: Any
    unbacked: tuple[Any, ...] = ()
    """Keras 3 variables with no ``tf.Variable`` behind them yet (made in a StatelessScope):
    the plan is out of date once one has it."""

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.parts]

    def is_current(self) -> bool:
        """Whether every component is still what would be read (no unbacked Keras 3
        variable has been given its ``tf.Variable`` since)."""
        return not any(getattr(v, "_value", None) is not None for v in self.unbacked)


PLAN_KEY = "stats_plan"
"""Where a session's cache keeps the model's StatsPlan (dropped by a structure change only:
freezes, edits and training keep it; :meth:`StatsPlan.is_current` says when it is out of
date otherwise)."""


def stats_plan(targets: list[tuple[str, Any]]) -> StatsPlan:
    """The :class:`StatsPlan` of ``(path, variable)`` pairs."""
    from .adapters.common import is_keras3_variable, replica_components
    from .host_stats import read_plan

    parts = tuple((path, tuple(replica_components(var))) for path, var in targets)
    components = [c for _, replicas in parts for c in replicas]
    return StatsPlan(parts, read_plan(components),
                     tuple(c for c in components if is_keras3_variable(c)))


def _plan_of(target: Any) -> StatsPlan:
    """The plan of what :func:`weight_stats` was given: a model's (or tree's) from its
    tree, kept in its session's cache (made each time for a tree no session keeps)."""
    from .inspect import inspect
    from .session import cached_for_tree
    from .tree import ModelTree, Node, VariableInfo

    if isinstance(target, (VariableInfo, Node, list, tuple)) or (
            hasattr(target, "assign") and hasattr(target, "dtype")):
        return stats_plan(_targets(target))
    tree = target if isinstance(target, ModelTree) else inspect(target)
    return cached_for_tree(tree, PLAN_KEY, lambda: stats_plan(
        [(v.path, v.variable) for v in tree.variables()]), current=StatsPlan.is_current)


def _kept_plan(target: Any) -> tuple[StatsPlan, Callable[[], bool]] | None:
    """A live model's plan kept from an earlier call, with the check that its layers are
    unchanged (:meth:`~hubwidgets.model.session.ModelSession.matches_model`), which the
    reads make while the kernel's threads reduce the first variables; None when there is
    none to reuse."""
    from .session import existing_session
    from .tree import ModelTree

    if isinstance(target, ModelTree):
        return None
    session = existing_session(target)
    plan = session.cache.get(PLAN_KEY) if session is not None else None
    if plan is None or not plan.is_current():
        return None
    return plan, session.matches_model


def _stats_of_all(plan: StatsPlan, check: Callable[[], bool] | None, bins: int,
                  value_range: tuple[float, float] | None) -> dict[str, WeightStats]:
    """Statistics of every variable.  Host (CPU) variables are reduced all at once
    (host_stats); the rest one by one on their devices.  A mirrored variable's statistics
    are computed on each replica's device, and the first replica's stand for the variable
    (a sync-on-read variable, whose replicas differ by design, is read as its aggregate).
    ``check`` (or None): see :func:`~hubwidgets.model.host_stats.variable_reductions`."""
    from .adapters.common import is_initialised, is_keras3_variable, variable_shape
    from .host_stats import variable_reductions

    host = iter(variable_reductions(plan.reads, bins, value_range, check))
    facts = iter(plan.reads.facts)
    parts = plan.parts
    results = {}
    for path, replicas in parts:
        per_replica = []
        for c in replicas:
            reduction, f = next(host), next(facts)
            if reduction is not None:
                one = _from_reduction(path, f, reduction)
            elif is_keras3_variable(c):  # no tf.Variable behind it yet (a StatelessScope)
                one = _not_initialised(path, f)
            else:
                try:
                    one = _stats_on_device(path, c, bins, value_range)
                except Exception:
                    if is_initialised(c):
                        raise
                    one = _not_initialised(path, f)
            if one.count != f.size and f.size != 0:  # not the declared shape: find out why
                one = _not_initialised(path, f) if not is_initialised(c) \
                    else dataclasses.replace(one, shape=variable_shape(c))
            per_replica.append(one)
        main = per_replica[0]
        if len(per_replica) > 1:
            main = dataclasses.replace(main, replicas=per_replica,
                                       device=", ".join(r.device for r in per_replica))
        results[path] = main
    return results


def _not_initialised(path: str, facts: Any) -> WeightStats:
    """A variable that holds no value yet: its declared size (0, with ``missing["count"]``,
    when its shape is not fully declared) and every figure missing with the reason, never
    the statistics of an empty variable."""
    from .adapters.common import NOT_INITIALISED

    figures = ("mean", "std", "min", "max", "l2_norm", "zero_fraction", "histogram")
    figures += ("count",) if facts.size < 0 else ()
    return WeightStats(path=path, dtype=facts.dtype, shape=facts.shape,
                       count=max(facts.size, 0), device=facts.device,
                       missing=dict.fromkeys(figures, NOT_INITIALISED))


def _from_reduction(path: str, facts: Any, r: Any, dtype: str | None = None) -> WeightStats:
    """The one place statistics are built, from either path's numbers (``facts``: the
    variable's :class:`~hubwidgets.model.host_stats.VariableFacts`; ``dtype`` overrides its
    dtype name).  (Runs for every variable of every call: arguments by position.)"""
    count, missing = r.count, dict(r.missing) if r.missing else {}
    mean, std, low, high = r.mean, r.std, r.min, r.max
    if count - r.nan - r.inf <= 0:
        why = "the variable is empty" if not count else "every value is NaN or Inf"
        missing.update({k: why for k in ("mean", "std", "min", "max")})
        mean = std = low = high = None
    l2, zero_fraction = r.l2, None
    if count:
        zero_fraction = r.zeros / count
    else:
        l2, missing["zero_fraction"] = 0.0, "the variable is empty"
    return WeightStats(path, dtype or facts.dtype, facts.shape, count, mean, std, low, high, l2,
                       zero_fraction, r.nan, r.inf, r.counts, r.edges, facts.device, [],
                       missing)


def _stats_on_device(path: str, var: Any, bins: int,
                     value_range: tuple[float, float] | None) -> WeightStats:
    """One variable that is not in host memory (or of a dtype numpy cannot read in place,
    bfloat16), reduced by the TensorFlow kernels on its own device.  Integer and bool
    variables are copied to the host instead, where their sums are exact."""
    from .adapters.common import dtype_name, shape_tuple
    from .host_stats import numpy_reduction, variable_facts

    tf = _kernels().tf
    dtype = tf.as_dtype(var.dtype)
    name = dtype_name(dtype)
    device = str(getattr(var, "device", "") or "")
    if name in INT_KINDS or name == "bool":
        values = np.asarray(tf.convert_to_tensor(var).numpy()).reshape(-1)
        return _from_reduction(path, variable_facts(var), numpy_reduction(values, bins,
                                                                          value_range), name)
    if name not in FLOAT_KINDS:
        size = int(tf.size(var))  # the value's: the declared shape may have unknown sizes
        why = f"statistics apply to numbers; this variable holds {name}"
        return WeightStats(path=path, dtype=name, shape=shape_tuple(var.shape), count=size,
                           device=device, l2_norm=None,
                           missing={k: why for k in ("mean", "std", "min", "max", "l2_norm",
                                                     "zero_fraction", "histogram")})
    with tf.device(device or None):
        flat = tf.reshape(tf.convert_to_tensor(var), [-1])
        size = int(flat.shape[0]) if flat.shape[0] is not None else int(tf.size(flat))
        if size > DEVICE_CHUNK:
            return _from_reduction(path, variable_facts(var), _chunked_on_device(
                flat, size, bins, value_range), name)
        scalars, counts = _device_pass(flat, bins, value_range)
    count, nan, inf, zeros, mean, std, lo_data, hi_data, l2, lo, hi = scalars.numpy().tolist()
    return _from_reduction(path, variable_facts(var), _device_reduction(
        int(count), int(nan), int(inf), int(zeros), mean, std, lo_data, hi_data, l2, lo, hi,
        counts.numpy().astype(np.int64), bins), name)


DEVICE_CHUNK = 1 << 22
"""Values of a device variable reduced at a time: the traced reduction works in float64
with a few temporaries (~50 bytes a value), so a 1 GB bfloat16 embedding is read in pieces
of 4 M values (~200 MB of device memory) instead of all at once."""


def _device_pass(flat: Any, bins: int, value_range: tuple[float, float] | None) -> Any:
    """One call of the traced reduction on (a piece of) a flat device tensor."""
    tf = _kernels().tf
    if flat.dtype in (tf.float16, tf.bfloat16):
        flat = tf.cast(flat, tf.float32)
    fixed = value_range is not None
    rng = tf.constant(value_range if fixed else (0.0, 1.0), tf.float64)
    return _kernels().get(flat.dtype)(flat, rng, tf.constant(fixed), tf.constant(bins, tf.int32))


def _chunked_on_device(flat: Any, size: int, bins: int,
                       value_range: tuple[float, float] | None) -> Any:
    """The reduction of a large device tensor in :data:`DEVICE_CHUNK` pieces: moments and
    the data range first, piece by piece (merged exactly as a two-pass variance is), then
    the histogram on the edges numpy would make for that range, piece by piece."""
    pieces = [(start, min(start + DEVICE_CHUNK, size)) for start in range(0, size, DEVICE_CHUNK)]
    rows = [_device_pass(flat[a:b], 1, None)[0].numpy() for a, b in pieces]
    n, nan, inf, zeros = (int(sum(r[k] for r in rows)) for k in range(4))
    finite = [(r[0] - r[1] - r[2], r[4], r[5], r[6], r[7], r[8]) for r in rows]
    total = sum(f[0] for f in finite)
    lo_data = min((f[3] for f in finite if f[0]), default=math.inf)
    hi_data = max((f[4] for f in finite if f[0]), default=-math.inf)
    mean = std = 0.0
    l2 = 0.0
    if total:
        mean = math.fsum(f[0] * f[1] for f in finite if f[0]) / total
        spread = math.fsum(f[0] * (f[2] ** 2 + (f[1] - mean) ** 2) for f in finite if f[0])
        std = math.sqrt(max(spread / total, 0.0))
        biggest = max(f[5] for f in finite)
        l2 = biggest * math.sqrt(math.fsum((f[5] / biggest) ** 2 for f in finite)) \
            if biggest > 0 and math.isfinite(biggest) else biggest
    if value_range is not None:
        lo, hi = value_range
    else:
        lo, hi = (lo_data, hi_data) if total else (0.0, 1.0)
    edges, _ = histogram_edges(lo, hi, bins)
    counts = np.zeros(bins, np.int64)
    if edges is not None:  # numpy's edges for this range: each piece binned on them
        fixed = (float(edges[0]), float(edges[-1]))
        for a, b in pieces:
            counts += _device_pass(flat[a:b], bins, fixed)[1].numpy().astype(np.int64)
    return _device_reduction(n, nan, inf, zeros, mean, std, lo_data, hi_data, l2, lo, hi,
                             counts, bins)


def _device_reduction(count: int, nan: int, inf: int, zeros: int, mean: float, std: float,
                      lo_data: float, hi_data: float, l2: float, lo: float, hi: float,
                      counts: np.ndarray, bins: int) -> Any:
    from .host_stats import L2_OVERFLOW, Reduction

    missing = {}
    edges, reason = histogram_edges(lo, hi, bins)
    if edges is None:
        counts, edges = np.zeros(0, np.int64), np.zeros(0)
        missing["histogram"] = reason
    if not math.isfinite(l2):
        l2, missing["l2_norm"] = None, L2_OVERFLOW
    return Reduction(count, nan, inf, zeros, mean, std, lo_data, hi_data, l2, counts, edges,
                     missing)
