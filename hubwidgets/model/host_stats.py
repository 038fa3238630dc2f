"""Statistics of variables that live in host memory, computed in place.

The CPU variables of a model are read inside the kernel's call, the largest first, while
its threads reduce those read before: by two TensorFlow ops per device (:func:`host_arrays`:
the few largest, then the rest), or, the first time a list of variables is read, by one op
per variable (TensorFlow's first batched read of new shapes costs more than the reads).
They are seen through the buffer protocol, which shares each variable's buffer, so nothing
is copied.  float32 and float64 variables go, all at once, to the C kernel ``_host_reduce``: two
fused passes (counts, min/max and shifted sums; then the histogram, two values per count
up to 80 bins) over every variable, on all cores.  An array of up to 4 M values is one task
that bins it right after its moment pass, while it is still in the cache (numpy's edges
made in C), so it is read from memory once; larger ones are cut into chunks.  Other
dtypes, and installs where the kernel could not be compiled, use numpy in blocks of
:data:`BLOCK` elements.

Every path gives a :class:`Reduction`, the same numbers the TensorFlow kernels in
``stats.py`` give; histograms follow ``numpy.histogram`` on float64 values exactly, bin edge
corrections included.

Range and precision.  Sums are kept in float64 and never overflow: float16, bfloat16 and
float32 values squared stay far inside float64's range; float64 variables whose largest
magnitude lies outside [2**-400, 2**480] are scaled by a power of two first (exact), and a
figure that still does not fit (the L2 norm of values near 1e308) is ``None`` with the
reason in ``missing``.  Integer means are exact (the sum is kept as a Python int, then
rounded once) and integer deviations are taken from the exact mean in integer arithmetic,
so int64 values near 2**62 keep their spread.  A histogram whose edges numpy could not make
(a range wider than float64 holds, or too narrow for distinct edges) is left out, with the
reason in ``missing["histogram"]``.
"""

from __future__ import annotations

import functools
import math
import os
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import OutOfDate

KERNEL_SWITCH = "HUBWIDGETS_KERNEL"
"""Set to "0" to run every statistic on the numpy path (the suite runs once that way)."""

try:
    from . import _host_reduce
except ImportError:  # built without a C compiler: numpy does the work
    _host_reduce = None
if os.environ.get(KERNEL_SWITCH, "1") == "0":
    _host_reduce = None

BLOCK = 1 << 16
NEAR_EDGE = 1e-6  # in bins: far wider than float64 rounding, so no misbinned value escapes
NEAR_EDGE_FLOAT32 = 1e-3  # in bins: wider than float32 rounding when |lo|, |hi| <= 100 x width
HOST_KINDS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "uint32", "uint64", "bool", "bfloat16")
FLOAT32_MAX = float(np.finfo(np.float32).max)
try:
    from ml_dtypes import bfloat16 as _bfloat16  # TensorFlow's own dependency
    BFLOAT16: np.dtype | None = np.dtype(_bfloat16)
except ImportError:  # pragma: no cover - TensorFlow always brings ml_dtypes
    BFLOAT16 = None
KERNEL_KINDS = (np.dtype(np.float32), np.dtype(np.float64))  # 16-bit: by bit pattern
THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)
# float64 magnitudes whose shifted sums of squares cannot overflow or lose precision to
# underflow (over up to 2**60 values); outside it the values are scaled by a power of two.
SAFE_MAGNITUDE = (2.0 ** -400, 2.0 ** 480)
# max(|lo|, |hi|) / bin width above which float64 edges are too coarse for the near-edge
# shortcut; numpy's own binning (every value compared with its edges) is used instead.
COARSE_EDGES = 2.0 ** 28
L2_OVERFLOW = "the L2 norm exceeds float64's largest value (about 1.8e308)"


@dataclass
class Reduction:
    """One variable's numbers, whichever path computed them.  ``min``/``max``/``mean``/``std``
    and ``l2`` cover the finite values; ``edges`` has ``len(counts) + 1`` entries, or both
    are empty when the histogram could not be made.  ``missing`` maps a figure left out
    (``"l2_norm"``, ``"histogram"``) to why."""

    count: int
    nan: int
    inf: int
    zeros: int
    mean: float
    std: float
    min: float
    max: float
    l2: float | None
    counts: np.ndarray
    edges: np.ndarray
    missing: dict[str, str] = field(default_factory=dict)


def histogram_edges(lo: float, hi: float, bins: int) -> tuple[np.ndarray | None, str]:
    """``numpy.histogram``'s edges for the range [lo, hi] (numpy's +-0.5 around a constant),
    or None and why numpy could not make them."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    with np.errstate(all="ignore"):
        edges = np.linspace(lo, hi, bins + 1)
    if not np.isfinite(edges).all():
        return None, (f"the range [{lo:.6g}, {hi:.6g}] is wider than float64 can hold "
                      "(hi - lo overflows); pass a narrower value_range")
    if np.any(edges[:-1] >= edges[1:]):
        return None, (f"the range [{lo!r}, {hi!r}] is too narrow for {bins} distinct bin "
                      "edges in float64; use fewer bins")
    return edges, ""


@dataclass(frozen=True)
class VariableFacts:
    """What never changes about a variable, read once while it lives: its dtype name, its
    device, its declared shape, its resource handle (None where it has none), whether it
    lives in host memory in a dtype read in place, and its dtype as TensorFlow's DataType
    number (for the batched read).  (Every statistics call reads hundreds of variables;
    these lookups through TensorFlow's properties add a few microseconds each.)

    ``size`` is the declared number of elements, -1 when the declared shape is not fully
    known (``shape=None`` or ``[None, 3]``): a read of another size is not the variable's
    values (an uninitialised variable reads as an empty tensor)."""

    dtype: str
    device: str
    shape: tuple[int | None, ...]
    handle: object
    host: bool
    dtype_enum: int = 0
    size: int = -1


_FACTS: dict[int, tuple[weakref.ref, VariableFacts]] = {}


def variable_facts(var: object) -> VariableFacts:
    """The :class:`VariableFacts` of ``var``, kept until ``var`` is garbage collected."""
    key = id(var)
    entry = _FACTS.get(key)
    if entry is not None and entry[0]() is var:
        return entry[1]
    from .formatting import shape_tuple

    device = str(getattr(var, "device", "") or "")
    dtype = getattr(getattr(var, "dtype", None), "name", "")
    from .adapters.common import is_sync_on_read

    handle = getattr(var, "handle", None)
    if handle is None or getattr(getattr(handle, "dtype", None), "name", "") != "resource" \
            or is_sync_on_read(var):  # its handle is the first replica's, not its aggregate
        handle = None
    declared = getattr(var, "shape", None)
    shape = shape_tuple(declared)
    known = declared is not None and getattr(declared, "rank", 0) is not None \
        and None not in shape
    facts = VariableFacts(dtype, device, shape, handle,
                          (not device or "CPU" in device.upper()) and dtype in HOST_KINDS,
                          int(getattr(getattr(var, "dtype", None), "as_datatype_enum", 0)),
                          math.prod(shape) if known else -1)
    try:
        ref = weakref.ref(var, lambda _, key=key: _FACTS.pop(key, None))
    except TypeError:  # not weakly referenceable: looked up every time
        return facts
    _FACTS[key] = (ref, facts)
    return facts


def host_array(var: object) -> np.ndarray | None:
    """The variable's values as a flat numpy view, when it lives on the host; else None."""
    facts = variable_facts(var)
    if not facts.host:
        return None
    return _flat_view(_read(var, facts), facts)


@dataclass(frozen=True)
class ReadPlan:
    """How to read a fixed list of variables: each one's :class:`VariableFacts`, the host
    variables with a resource handle grouped by device (their indices, handles and the
    batched op's attributes: one op per group), and the list's dtypes, shapes and devices
    (what TensorFlow's kernel cache keys on)."""

    variables: tuple[object, ...]
    facts: tuple[VariableFacts, ...]
    groups: tuple[tuple[tuple[int, ...], list[object], tuple[object, ...]], ...]
    signature: tuple[tuple[str, int, tuple[int | None, ...]], ...]

    def __len__(self) -> int:
        return len(self.variables)

    @functools.cached_property
    def largest_first(self) -> list[int]:
        """The indices of the variables, the largest first."""
        return sorted(range(len(self.variables)), key=lambda i: -self.facts[i].size)

    @functools.cached_property
    def batched_reads(self) -> dict[int, tuple[list[int], "ReadPlan"]]:
        """The two batched reads of :func:`variable_reductions`, keyed by the position in
        :attr:`largest_first` where each starts: the :data:`FIRST_READ` largest variables,
        then the rest (their indices and their own plan)."""
        order = self.largest_first
        parts = {0: order[:FIRST_READ], FIRST_READ: order[FIRST_READ:]}
        return {k: (indices, _read_plan_of([self.variables[i] for i in indices],
                                           [self.facts[i] for i in indices]))
                for k, indices in parts.items() if indices}

    @functools.cached_property
    def signature_key(self) -> int:
        """The hash of :attr:`signature` (hundreds of tuples: hashed once per plan)."""
        return hash(self.signature)


def read_plan(variables: list[object]) -> ReadPlan:
    """The :class:`ReadPlan` of ``variables``."""
    return _read_plan_of(variables, [variable_facts(v) for v in variables])


def _read_plan_of(variables: list[object], facts: list[VariableFacts]) -> ReadPlan:
    members: dict[str, list[int]] = {}
    for i, f in enumerate(facts):
        if f.host and f.handle is not None and f.dtype_enum:
            members.setdefault(f.device, []).append(i)
    groups = tuple((tuple(m), [facts[i].handle for i in m],
                    ("N", len(m), "dtypes", [facts[i].dtype_enum for i in m]))
                   for m in members.values() if len(m) > 1)
    return ReadPlan(tuple(variables), tuple(facts), groups,
                    tuple((f.device, f.dtype_enum, f.shape) for f in facts))


def host_arrays(variables: list[object] | ReadPlan) -> list[np.ndarray | None]:
    """:func:`host_array` of every variable (or of a :class:`ReadPlan`'s), the host ones
    with a resource handle read by one TensorFlow op per device instead of one op each.

    TensorFlow's own ``_ReadVariablesOp`` (registered with ``ReadVariableOp``, the same
    copy-on-write read, for N variables at once) costs about 2 us per variable against about
    12 us for one dispatched ``ReadVariableOp`` each: at ResNet50's 320 variables, 0.7 ms
    instead of 4.  The op is internal to TensorFlow and has no Python wrapper, so it is
    dispatched through the eager executor; where that fails (an older build, an
    uninitialised variable) each variable is read on its own, with that read's error."""
    plan = variables if isinstance(variables, ReadPlan) else read_plan(variables)
    out: list[np.ndarray | None] = [None] * len(plan.variables)
    batched = set()
    for members, handles, attrs in plan.groups:
        values = _read_many(handles, attrs)
        if values is not None:
            batched.update(members)
            for i, value in zip(members, values, strict=True):
                out[i] = _flat_view(value, plan.facts[i])
    for i, f in enumerate(plan.facts):
        if f.host and i not in batched:
            out[i] = host_array(plan.variables[i])
    return out


def _read_many(handles: list[object], attrs: tuple[object, ...]) -> list[object] | None:
    """The values of many variables on one device, by one ``_ReadVariablesOp``; None when
    it cannot run (the caller then reads them one by one)."""
    from .tf_compat import read_variables

    return read_variables(handles, attrs)


def _flat_view(value: object, facts: VariableFacts) -> np.ndarray | None:
    """A read tensor as a flat numpy array: a view of its buffer (zero-copy on the host;
    ``.numpy()`` would copy the whole variable).  bfloat16 has no buffer format, so its
    tensor is bit-cast to uint16 (TensorFlow's bitcast shares the buffer) and seen as
    ml_dtypes' bfloat16.  None when it cannot be seen so, or when its size is not the
    declared one (an uninitialised variable reads as an empty tensor: those are not its
    values)."""
    try:
        if facts.dtype == "bfloat16" and BFLOAT16 is not None:
            import tensorflow as tf

            bits = tf.bitcast(value, tf.uint16)
            flat = np.frombuffer(bits, np.uint16).view(BFLOAT16)  # type: ignore[call-overload]
        else:
            flat = np.frombuffer(value, facts.dtype)  # type: ignore[call-overload]
    except (TypeError, ValueError, AttributeError):
        return None
    return flat if facts.size < 0 or flat.size == facts.size else None


def _read(var: object, facts: VariableFacts) -> object:
    """The variable's current value as a tensor (ReadVariableOp directly: half the cost of
    ``value()``, which matters at hundreds of variables)."""
    if facts.handle is not None:
        from .tf_compat import read_variable

        return read_variable(facts.handle, var.dtype, var)
    return var.value() if hasattr(var, "value") else var


def _kernel_ready(a: np.ndarray | None) -> bool:
    return a is not None and _host_reduce is not None and a.dtype in KERNEL_KINDS \
        and a.flags.c_contiguous


SIXTEEN_BIT = tuple(k for k in (np.dtype(np.float16), BFLOAT16) if k is not None)


def _pattern_ready(a: np.ndarray | None) -> bool:
    """16-bit floats, reduced from the counts of their 65,536 bit patterns (one pass)."""
    return a is not None and _host_reduce is not None and a.dtype in SIXTEEN_BIT \
        and a.flags.c_contiguous and hasattr(_host_reduce, "pattern_counts")


@functools.lru_cache(maxsize=2)
def _pattern_table(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each of the 65,536 bit patterns of a 16-bit float type: its float64 value, and
    whether it is finite, NaN, or zero."""
    with np.errstate(invalid="ignore"):  # the NaN patterns
        values = np.arange(1 << 16, dtype=np.uint16).view(dtype).astype(np.float64)
    return values, np.isfinite(values), np.isnan(values), values == 0


def _by_patterns(arrays: list[np.ndarray | None], out: list[Reduction | None],
                 indices: list[int], bins: int,
                 value_range: tuple[float, float] | None) -> None:
    """Reductions of 16-bit arrays into ``out``: the kernel counts each array's values by
    bit pattern in one pass over memory (two threads' tables in L2, no conversion), and
    every figure follows from the 65,536 counts (see :func:`pattern_reduction`)."""
    for start in range(0, len(indices), 64):  # 512 KB of counts per array: a few at a time
        part = indices[start:start + 64]
        table = np.empty((len(part), 1 << 16), np.int64)
        _host_reduce.pattern_counts([_kernel_view(arrays[i]) for i in part], table, THREADS)
        for row, i in zip(table, part, strict=True):
            out[i] = pattern_reduction(row, _pattern_table(arrays[i].dtype), bins, value_range)


def pattern_reduction(counts: np.ndarray, table: tuple[np.ndarray, ...], bins: int,
                      value_range: tuple[float, float] | None) -> Reduction:
    """The :class:`Reduction` of values given as ``counts`` of each pattern of ``table``
    (:func:`_pattern_table`).  Each product count x value (x value) is exact in float64
    (counts < 2**32 times 8- or 11-bit mantissas); they are added in one pass each, over at
    most 65,536 distinct values.  The histogram is numpy's rule on the distinct values,
    weighted by their counts."""
    values, finite_at, nan_at, zero_at = table
    n, nan = int(counts.sum()), int(counts[nan_at].sum())
    keep = finite_at & (counts > 0)
    present, weight = values[keep], counts[keep]
    finite = int(weight.sum())
    inf, zeros = n - nan - finite, int(counts[zero_at].sum())
    missing: dict[str, str] = {}
    if finite:
        lo, hi = float(present.min()), float(present.max())
        weighted = weight.astype(np.float64)
        mean = dot_product(weighted, present) / finite
        centred = present - mean
        std = math.sqrt(max(dot_product(weighted * centred, centred) / finite, 0.0))
        l2: float | None = math.sqrt(dot_product(weighted * present, present))
    else:
        lo, hi, mean, std, l2 = math.inf, -math.inf, 0.0, 0.0, 0.0
    first, last = value_range if value_range is not None else ((lo, hi) if finite else (0.0, 1.0))
    edges, reason = histogram_edges(first, last, bins)
    if edges is None:
        histogram, edges = np.zeros(0, np.int64), np.zeros(0)
        missing["histogram"] = reason
    else:  # numpy's own rule on the distinct values, each counted as often as it occurs
        histogram = np.histogram(present, bins=bins, range=(first, last),
                                 weights=weight)[0].astype(np.int64)
    return Reduction(n, nan, inf, zeros, mean, std, lo, hi, l2, histogram, edges, missing)


def _kernel_view(a: np.ndarray) -> np.ndarray:
    """The array as the kernel reads it: bfloat16 as its uint16 bit patterns (numpy gives
    ml_dtypes' bfloat16 no buffer format); every other kind as it is."""
    return a.view(np.uint16) if a.dtype == BFLOAT16 else a


def widened(block: np.ndarray) -> np.ndarray:
    """A block of bfloat16 as float32 (exact); any other block as it is.  The numpy path
    widens block by block, never a whole variable."""
    return block.astype(np.float32) if block.dtype == BFLOAT16 else block


def host_reductions(arrays: list[np.ndarray | None], bins: int,
                    value_range: tuple[float, float] | None) -> list[Reduction | None]:
    """A :class:`Reduction` per array (None where an array is None).  The kernel takes the
    largest arrays first, so that its threads end together."""
    out: list[Reduction | None] = [None] * len(arrays)
    _by_patterns(arrays, out, [i for i, a in enumerate(arrays) if _pattern_ready(a)], bins,
                 value_range)
    batch = [i for i, a in enumerate(arrays) if _kernel_ready(a) and out[i] is None]
    batch.sort(key=lambda i: arrays[i].size, reverse=True)  # type: ignore[union-attr]
    ready = [arrays[i] for i in batch]
    for i, reduction in zip(batch, _kernel_reductions(ready, bins, value_range), strict=True):
        out[i] = reduction
    return _numpy_for_the_rest(arrays, out, bins, value_range)


def _confirm(check: Callable[[], bool] | None) -> None:
    if check is not None and not check():
        raise OutOfDate


def variable_reductions(variables: list[object] | ReadPlan, bins: int,
                        value_range: tuple[float, float] | None,
                        check: Callable[[], bool] | None = None) -> list[Reduction | None]:
    """A :class:`Reduction` per variable (or per variable of a :class:`ReadPlan`) that lives
    in host memory, None for the others.

    The variables are read inside the kernel's call, largest first, while its threads
    reduce the ones read before.  A list read before in this process is read by one
    TensorFlow op per device for its few largest variables, then one for the rest
    (:func:`host_arrays`), so the threads start on the largest while the rest are read.
    The first time, each variable is read on its own: TensorFlow builds a kernel for every
    new list of input shapes it is given, about 55 us per input for the batched op (17 ms
    for ResNet50's 320) against 10-30 us per shape for the single read.

    ``check()``, when given, is called once, after the largest variables are read (while
    the threads reduce them): when it says False, :class:`OutOfDate` is raised."""
    plan = variables if isinstance(variables, ReadPlan) else read_plan(variables)
    if _host_reduce is None or value_range is not None or not plan.variables:
        _confirm(check)
        return host_reductions(host_arrays(plan), bins, value_range)
    return _streamed_reductions(plan, bins, _read_before(plan.signature_key), check)


_READ_BEFORE: set[int] = set()  # hashes of the signatures of the variable lists read so far


def _read_before(key: int) -> bool:
    """Whether a list of variables of these dtypes, shapes and devices (a
    :attr:`ReadPlan.signature_key`) was read before; it is remembered, so the next read is
    batched.  Only the signature's hash is kept (a model of 10,000 variables has a 10,000-
    entry signature); two lists with one hash only mean a list's first read is batched,
    which gives the same values."""
    if key in _READ_BEFORE:
        return True
    if len(_READ_BEFORE) >= 4096:  # a long session of many models: start again
        _READ_BEFORE.clear()
    _READ_BEFORE.add(key)
    return False


FIRST_READ = 8  # variables in a list's first batched read (the largest): the threads' start


def _streamed_reductions(plan: ReadPlan, bins: int, batched: bool,
                         check: Callable[[], bool] | None) -> list[Reduction | None]:
    """:func:`host_reductions` of the plan's variables read inside the kernel's call, the
    largest first: one by one, or (``batched``) by :func:`host_arrays` in two reads, the
    :data:`FIRST_READ` largest and then the rest; ``check`` is confirmed between the two."""
    n = len(plan)
    check_at = min(FIRST_READ, n - 1)
    arrays: list[np.ndarray | None] = [None] * n
    batch: list[int] = []
    # the largest first: the threads have work from the first reads on (models keep their
    # large weights near the output, so in model order they would wait for the last reads)
    order = plan.largest_first
    reads = plan.batched_reads if batched else {}

    def read(k: int) -> np.ndarray | None:
        i = order[k]
        if k == check_at:
            _confirm(check)
        if not batched:
            arrays[i] = host_array(plan.variables[i])
        elif k in reads:
            indices, part = reads[k]
            for j, a in zip(indices, host_arrays(part), strict=True):
                arrays[j] = a
        a = arrays[i]
        if _kernel_ready(a) and not _pattern_ready(a):
            batch.append(i)
            return _kernel_view(a)
        return None

    tables = _stats_tables(n, bins)
    _host_reduce.stats(read, n, bins, *tables, THREADS)
    out: list[Reduction | None] = [None] * n
    if len(batch) < n:  # some were not for the kernel: the rows of those that were
        row_of = np.empty(n, np.intp)
        row_of[order] = np.arange(n)
        rows = row_of[np.asarray(batch, np.intp)]
        tables = tuple(table[rows] for table in tables)
    reductions = _reductions([arrays[i] for i in batch], bins, None, *tables)
    for i, reduction in zip(batch, reductions, strict=True):
        out[i] = reduction
    _by_patterns(arrays, out, [i for i, a in enumerate(arrays) if _pattern_ready(a)], bins, None)
    return _numpy_for_the_rest(arrays, out, bins, None)


def _numpy_for_the_rest(arrays: list[np.ndarray | None], out: list[Reduction | None],
                        bins: int, value_range: tuple[float, float] | None
                        ) -> list[Reduction | None]:
    for i, a in enumerate(arrays):
        if a is not None and out[i] is None:
            out[i] = numpy_reduction(a, bins, value_range)
    return out


def _stats_tables(n: int, bins: int) -> tuple[np.ndarray, ...]:
    """What the kernel's ``stats`` fills: moments, edges, counts, and which histograms it
    made."""
    return (np.empty((n, 9)), np.empty((n, bins + 1)), np.empty((n, bins), np.int64),
            np.zeros(n, np.uint8))


def _is_coarse(lo: float, hi: float, bins: int) -> bool:
    lo, hi = float(lo), float(hi)  # Python floats: inf on overflow, no numpy warning
    return max(abs(lo), abs(hi)) / (hi - lo) * bins > COARSE_EDGES


def _needs_scaling(lo: float, hi: float) -> bool:
    magnitude = max(abs(lo), abs(hi))
    return magnitude != 0 and not SAFE_MAGNITUDE[0] <= magnitude <= SAFE_MAGNITUDE[1]


def _kernel_reductions(arrays: list[np.ndarray], bins: int,
                       value_range: tuple[float, float] | None) -> list[Reduction]:
    if not arrays:
        return []
    tables = _stats_tables(len(arrays), bins)
    views = [_kernel_view(a) for a in arrays]
    if value_range is None:  # both passes in one call, each array read from memory once
        _host_reduce.stats(views.__getitem__, len(views), bins, *tables, THREADS)
    else:
        _host_reduce.moments(views, tables[0], THREADS)
    return _reductions(arrays, bins, value_range, *tables)


def _reductions(arrays: list[np.ndarray], bins: int, value_range: tuple[float, float] | None,
                moments: np.ndarray, kernel_edges: np.ndarray, kernel_counts: np.ndarray,
                histogram_done: np.ndarray) -> list[Reduction]:
    """Reductions from the kernel's moments, and its histograms where ``histogram_done`` (the others
    are binned here, by the kernel's ``histograms`` or by numpy)."""
    if not arrays:
        return []
    finite, nan, inf, zeros, lo_data, hi_data, shift, s1, s2 = moments.T
    n = np.maximum(finite, 1)
    with np.errstate(all="ignore"):
        mean = shift + s1 / n
        std = np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0.0))
        l2 = np.sqrt(np.maximum(s2 + 2 * shift * s1 + finite * shift * shift, 0.0))
    if value_range is not None:
        lo, hi = np.full(len(arrays), value_range[0]), np.full(len(arrays), value_range[1])
    else:  # numpy's rules: (0, 1) when empty, +-0.5 around a constant
        lo, hi = np.where(finite > 0, lo_data, 0.0), np.where(finite > 0, hi_data, 1.0)
    rest = np.flatnonzero(histogram_done == 0)
    edges: list[np.ndarray | None] = list(kernel_edges) if histogram_done.any() \
        else [None] * len(arrays)
    reasons = [""] * len(arrays)
    counts: list[np.ndarray] = list(kernel_counts) if histogram_done.any() \
        else [np.zeros(0, np.int64)] * len(arrays)
    if rest.size:
        rest_edges, rest_reasons = _all_edges(lo[rest], hi[rest], bins)
        for i, e, why in zip(rest, rest_edges, rest_reasons, strict=True):
            edges[i], reasons[i], counts[i] = e, why, np.zeros(0, np.int64)
    direct, exact = [], []
    for i in rest:
        e = edges[i]
        if e is not None:
            (exact if _is_coarse(e[0], e[-1], bins) else direct).append(i)
    if direct:
        table = np.empty((len(direct), bins), np.int64)
        clean = ((nan[direct] + inf[direct]) == 0).astype(np.uint8)
        _host_reduce.histograms([_kernel_view(arrays[i]) for i in direct],
                                np.ascontiguousarray([edges[i] for i in direct]), clean, bins,
                                value_range is not None, table, THREADS)
        for row, i in enumerate(direct):
            counts[i] = table[row]
    for i in exact:
        counts[i] = _histogram_by_blocks(arrays[i], edges[i], bins, value_range is not None)
    out = []
    rows = zip(arrays, (finite + nan + inf).astype(np.int64).tolist(),
               nan.astype(np.int64).tolist(), inf.astype(np.int64).tolist(),
               zeros.astype(np.int64).tolist(), mean.tolist(), std.tolist(), l2.tolist(),
               lo_data.tolist(), hi_data.tolist(), counts, edges, reasons, strict=True)
    isfinite = math.isfinite
    for a, count, n_nan, n_inf, n_zero, m, s, norm, low, high, c, e, why in rows:
        missing = {}
        if e is None:
            e, missing["histogram"] = np.zeros(0), why
        if a.itemsize == 8 and count > n_nan + n_inf and _needs_scaling(low, high):  # float64
            m, s, norm = _float_moments(a, count - n_nan - n_inf, low, high)
        if norm is None or not isfinite(norm):
            norm, missing["l2_norm"] = None, L2_OVERFLOW
        out.append(Reduction(count, n_nan, n_inf, n_zero, m, s, low, high, norm, c, e, missing))
    return out


def _all_edges(lo: np.ndarray, hi: np.ndarray,
               bins: int) -> tuple[list[np.ndarray | None], list[str]]:
    """:func:`histogram_edges` for many ranges at once (one linspace: hundreds of variables),
    row by row where a row needs numpy's special cases."""
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    same = lo == hi
    lo[same] -= 0.5
    hi[same] += 0.5
    with np.errstate(all="ignore"):
        regular = np.isfinite(hi - lo) & ((hi - lo) / bins != 0)
        table = np.linspace(lo[regular], hi[regular], bins + 1, axis=1)
        good = np.isfinite(table).all(axis=1) & (table[:, :-1] < table[:, 1:]).all(axis=1)
    edges: list[np.ndarray | None] = [None] * len(lo)
    reasons = [""] * len(lo)
    for row, i in enumerate(np.flatnonzero(regular)):
        if good[row]:
            edges[i] = table[row]
    for i in range(len(lo)):
        if edges[i] is None:  # a subnormal width or a bad range: one by one, numpy's way
            # (lo, hi) already hold numpy's +-0.5: where a constant is still a constant, a
            # second +-0.5 changes nothing either
            edges[i], reasons[i] = histogram_edges(float(lo[i]), float(hi[i]), bins)
    return edges, reasons


def dot_product(x: np.ndarray, y: np.ndarray) -> float:
    """``x . y`` of two 1-D blocks, without BLAS: OpenBLAS wakes its threads for every call,
    which on a busy 2-core machine cost 730 us for 16K float64 values against 60 us here
    (einsum's own loop), and the blocks are many."""
    return float(np.einsum("i,i->", x, y))


def _finite_blocks(flat: np.ndarray):
    """The finite values of ``flat``, BLOCK at a time (float64 for float input)."""
    for start in range(0, flat.size, BLOCK):
        raw = widened(flat[start:start + BLOCK])
        if raw.dtype.kind not in "iub":
            keep = np.isfinite(raw)
            if not keep.all():
                raw = raw[keep]
        yield raw


def _float_moments(flat: np.ndarray, finite: int, lo: float,
                   hi: float) -> tuple[float, float, float | None]:
    """mean, std and L2 norm of the finite values, in float64, scaled by a power of two when
    their magnitude needs it (two passes)."""
    exponent = 0
    if _needs_scaling(lo, hi):
        exponent = max(min(math.frexp(max(abs(lo), abs(hi)))[1], 1000), -1000)
    def scaled(raw: np.ndarray) -> np.ndarray:  # float64, by 2**-exponent when needed
        y = raw.astype(np.float64)
        return np.ldexp(y, -exponent) if exponent else y

    total = 0.0
    for raw in _finite_blocks(flat):
        total += float(scaled(raw).sum())
    first_mean = total / finite
    sum_d = sum_dd = sum_yy = 0.0
    for raw in _finite_blocks(flat):
        y = scaled(raw)
        sum_yy += dot_product(y, y)
        y -= first_mean
        sum_d += float(y.sum())
        sum_dd += dot_product(y, y)
    mean = first_mean + sum_d / finite
    std = math.sqrt(max(sum_dd / finite - (sum_d / finite) ** 2, 0.0))
    try:
        l2: float | None = math.ldexp(math.sqrt(sum_yy), exponent)
    except OverflowError:
        l2 = None
    return math.ldexp(mean, exponent), math.ldexp(std, exponent), l2


def _exact_sum(raw: np.ndarray) -> int:
    """The exact sum of an integer block (at most BLOCK values), as a Python int."""
    if raw.dtype.itemsize < 8:
        return int(raw.sum(dtype=np.int64))
    return (int((raw >> 32).sum()) << 32) + int((raw & 0xFFFFFFFF).sum())


def _int_moments(flat: np.ndarray, total: int, lo: int, hi: int) -> tuple[float, float, float]:
    """mean (exact, rounded once), std and L2 norm of integer values.  Deviations are taken
    from the integer part of the mean in integer arithmetic, so they keep every bit."""
    n = flat.size
    whole = total // n
    fraction = (total - whole * n) / n  # in [0, 1)
    wide = hi - lo >= 2 ** 63  # deviations may not fit in int64: float64 is exact enough
    mean = total / n
    sum_c = sum_cc = sum_xx = 0.0
    for start in range(0, n, BLOCK):
        raw = flat[start:start + BLOCK]
        values = raw.astype(np.float64)
        sum_xx += dot_product(values, values)
        if wide:
            centered = values - mean
        elif raw.dtype.itemsize == 8:  # wraps modulo 2**64, exact as |x - whole| < 2**63
            unsigned = raw.view(np.uint64) - np.uint64(whole % 2 ** 64)
            centered = unsigned.view(np.int64).astype(np.float64) - fraction
        else:
            centered = (raw.astype(np.int64) - whole).astype(np.float64) - fraction
        sum_c += float(centered.sum())
        sum_cc += dot_product(centered, centered)
    std = math.sqrt(max(sum_cc / n - (sum_c / n) ** 2, 0.0))
    return mean, std, math.sqrt(sum_xx)


def numpy_reduction(flat: np.ndarray, bins: int,
                    value_range: tuple[float, float] | None) -> Reduction:
    """The numpy path, streamed in blocks: NaN and Inf counted and left out of every figure."""
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    elif flat.dtype.kind not in "iuf" and flat.dtype != BFLOAT16:  # another ml_dtypes float
        flat = flat.astype(np.float32)
    n = flat.size
    is_int = flat.dtype.kind in "iu"
    nan = inf = zeros = finite = 0
    total = 0
    lo_data = hi_data = None
    for start in range(0, n, BLOCK):
        raw = widened(flat[start:start + BLOCK])
        if not is_int:
            keep = np.isfinite(raw)
            if not keep.all():
                bad = raw[~keep]
                block_nan = int(np.count_nonzero(np.isnan(bad)))
                nan, inf = nan + block_nan, inf + bad.size - block_nan
                raw = raw[keep]
        if raw.size == 0:
            continue
        finite += raw.size
        zeros += raw.size - int(np.count_nonzero(raw))
        low, high = raw.min(), raw.max()
        lo_data = low if lo_data is None else min(lo_data, low)
        hi_data = high if hi_data is None else max(hi_data, high)
        if is_int:
            total += _exact_sum(raw)
    mean = std = 0.0
    l2: float | None = 0.0
    if finite and is_int:
        mean, std, l2 = _int_moments(flat, total, int(lo_data), int(hi_data))
    elif finite:
        mean, std, l2 = _float_moments(flat, finite, float(lo_data), float(hi_data))
    lo_f = float(lo_data) if finite else math.inf
    hi_f = float(hi_data) if finite else -math.inf
    if value_range is not None:
        lo, hi = value_range
    else:
        lo, hi = (lo_f, hi_f) if finite else (0.0, 1.0)
    edges, reason = histogram_edges(lo, hi, bins)
    missing = {}
    if edges is None:
        missing["histogram"] = reason
        counts, edges = np.zeros(0, np.int64), np.zeros(0)
    else:
        counts = _histogram_by_blocks(flat, edges, bins, value_range is not None)
    if l2 is None:
        missing["l2_norm"] = L2_OVERFLOW
    return Reduction(n, nan, inf, zeros, mean, std, lo_f, hi_f, l2, counts, edges, missing)


def _histogram_by_blocks(flat: np.ndarray, edges: np.ndarray, bins: int,
                         clipped: bool) -> np.ndarray:
    """numpy.histogram's counts of the finite values of ``flat`` on ``edges``, by blocks."""
    lo, hi = float(edges[0]), float(edges[-1])
    exact = _is_coarse(lo, hi, bins)
    fast = not exact and flat.dtype in (np.float32, BFLOAT16) and bins <= 1024 \
        and max(abs(lo), abs(hi)) <= 100 * (hi - lo) and hi - lo < FLOAT32_MAX \
        and bins / (hi - lo) < FLOAT32_MAX and float(np.float32(lo)) == lo
    counts = np.zeros(bins + 1, np.int64)
    for raw in _finite_blocks(flat):
        if raw.size:
            counts += _bin_counts(raw, lo, hi, edges, bins, fast, clipped, exact)
    return counts[:bins]


def _bin_counts(raw: np.ndarray, lo: float, hi: float, edges: np.ndarray, bins: int,
                fast: bool, clipped: bool, exact: bool = False) -> np.ndarray:
    """``numpy.histogram``'s uniform-bin rule (on float64 values) for one block; index
    ``bins`` collects the values outside ``[lo, hi]``.

    ``fast``: scale in float32 (the block's own type, no float64 copy); the candidates
    within :data:`NEAR_EDGE_FLOAT32` of an edge are then re-checked against the float64
    edges, so the counts are still numpy's.  ``exact``: numpy's own steps on every value
    (for edges too coarse for the shortcut).
    """
    outside = 0
    if clipped:
        # compared as float64 (a Python float would be cast to the block's own type)
        inside = (raw >= np.float64(lo)) & (raw <= np.float64(hi))
        if not inside.all():
            raw = raw[inside]
            outside = inside.size - raw.size
    if exact:
        values = raw.astype(np.float64)
        index = ((values - lo) / (hi - lo) * bins).astype(np.intp)
        index[index == bins] -= 1
        index[values < edges[index]] -= 1
        index[(values >= edges[index + 1]) & (index != bins - 1)] += 1
        counts = np.bincount(index, minlength=bins + 1)
        counts[bins] += outside
        return counts
    if fast:
        scaled = (raw - np.float32(lo)) * np.float32(bins / (hi - lo))
        tolerance = NEAR_EDGE_FLOAT32
    else:
        scaled = (raw.astype(np.float64) - lo) / (hi - lo) * bins
        tolerance = NEAR_EDGE
    index = scaled.astype(np.intp)
    np.clip(index, 0, bins, out=index)
    scaled -= index
    near = np.flatnonzero((scaled < tolerance) | (scaled > 1 - tolerance))
    if near.size:  # numpy's edge corrections, on the few values that need them
        values, fixed = raw[near].astype(np.float64), index[near]
        fixed[fixed == bins] -= 1
        fixed[values < edges[fixed]] -= 1
        fixed[(values >= edges[fixed + 1]) & (fixed != bins - 1)] += 1
        index[near] = fixed
    index[index == bins] = bins - 1
    counts = np.bincount(index, minlength=bins + 1)
    counts[bins] += outside
    return counts
