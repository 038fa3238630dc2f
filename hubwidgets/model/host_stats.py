"""Statistics of variables that live in host memory, computed in place.

A CPU variable is read through ``memoryview``, which shares the variable's buffer, so
nothing is copied.  float32 and float64 variables then go, all at once, to the C kernel
``_host_reduce``: two fused passes (counts, min/max and shifted sums; then the histogram)
over every variable, cut into chunks that run on all cores.  Other dtypes, and installs
where the kernel could not be compiled, use numpy in blocks of :data:`BLOCK` elements.

Every path gives a :class:`Reduction`, the same numbers the TensorFlow kernels in
``stats.py`` give; histograms follow ``numpy.histogram`` on float64 values exactly, bin edge
corrections included.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

try:
    from . import _host_reduce
except ImportError:  # built without a C compiler: numpy does the work
    _host_reduce = None

BLOCK = 1 << 16
NEAR_EDGE = 1e-6  # in bins: far wider than float64 rounding, so no misbinned value escapes
NEAR_EDGE_FLOAT32 = 1e-3  # in bins: wider than float32 rounding when |lo|, |hi| <= 100 x width
HOST_KINDS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "uint32", "uint64", "bool")
FLOAT32_MAX = float(np.finfo(np.float32).max)
KERNEL_KINDS = (np.dtype(np.float32), np.dtype(np.float64))
THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)


@dataclass
class Reduction:
    """One variable's numbers, whichever path computed them.  ``min``/``max``/``mean``/``std``
    and ``l2`` cover the finite values; ``edges`` has ``len(counts) + 1`` entries."""

    count: int
    nan: int
    inf: int
    zeros: int
    mean: float
    std: float
    min: float
    max: float
    l2: float
    counts: np.ndarray
    edges: np.ndarray


def host_array(var: object) -> np.ndarray | None:
    """The variable's values as a flat numpy view, when it lives on the host; else None."""
    device = str(getattr(var, "device", "") or "")
    if device and "CPU" not in device.upper():
        return None
    dtype = getattr(getattr(var, "dtype", None), "name", "")
    if dtype not in HOST_KINDS:
        return None
    try:  # memoryview of a CPU tensor is zero-copy; .numpy() would copy the whole variable
        values = np.asarray(memoryview(_read(var)))
    except (TypeError, ValueError, AttributeError):
        return None
    return values.reshape(-1)


def _read(var: object) -> object:
    """The variable's current value as a tensor (ReadVariableOp directly: half the cost of
    ``value()``, which matters at hundreds of variables)."""
    handle = getattr(var, "handle", None)
    if handle is not None and getattr(handle, "dtype", None) is not None \
            and handle.dtype.name == "resource":
        import tensorflow as tf

        return tf.raw_ops.ReadVariableOp(resource=handle, dtype=var.dtype)
    return var.value() if hasattr(var, "value") else var


def host_reductions(arrays: list[np.ndarray | None], bins: int,
                    value_range: tuple[float, float] | None) -> list[Reduction | None]:
    """A :class:`Reduction` per array (None where an array is None, or where only the
    numpy path is available and the array holds NaN/Inf: the TensorFlow kernels do those)."""
    out: list[Reduction | None] = [None] * len(arrays)
    batch = [i for i, a in enumerate(arrays) if a is not None and _host_reduce is not None
             and a.dtype in KERNEL_KINDS and a.flags.c_contiguous]
    for i, reduction in zip(batch, _kernel_reductions([arrays[i] for i in batch], bins,
                                                      value_range)):
        out[i] = reduction
    for i, a in enumerate(arrays):
        if a is not None and out[i] is None:
            out[i] = numpy_reduction(a, bins, value_range)
    return out


def _kernel_reductions(arrays: list[np.ndarray], bins: int,
                       value_range: tuple[float, float] | None) -> list[Reduction]:
    if not arrays:
        return []
    moments = np.empty((len(arrays), 9))
    _host_reduce.moments(arrays, moments, THREADS)
    finite, nan, inf, zeros, lo_data, hi_data, shift, s1, s2 = moments.T
    n = np.maximum(finite, 1)
    mean = shift + s1 / n
    std = np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0.0))
    l2 = np.sqrt(np.maximum(s2 + 2 * shift * s1 + finite * shift * shift, 0.0))
    if value_range is not None:
        lo, hi = np.full(len(arrays), value_range[0]), np.full(len(arrays), value_range[1])
    else:  # numpy's rules: (0, 1) when empty, +-0.5 around a constant
        lo, hi = np.where(finite > 0, lo_data, 0.0), np.where(finite > 0, hi_data, 1.0)
    same = lo == hi
    lo[same] -= 0.5
    hi[same] += 0.5
    edges = np.ascontiguousarray(np.linspace(lo, hi, bins + 1, axis=1))
    counts = np.empty((len(arrays), bins), np.int64)
    clean = ((nan + inf) == 0).astype(np.uint8)
    _host_reduce.histograms(arrays, edges, clean, bins, value_range is not None, counts,
                            THREADS)
    columns = zip((finite + nan + inf).tolist(), nan.tolist(), inf.tolist(), zeros.tolist(),
                  mean.tolist(), std.tolist(), lo_data.tolist(), hi_data.tolist(), l2.tolist())
    return [Reduction(int(c), int(na), int(nf), int(z), m, s, a, b, norm, counts[i], edges[i])
            for i, (c, na, nf, z, m, s, a, b, norm) in enumerate(columns)]


def numpy_reduction(flat: np.ndarray, bins: int,
                    value_range: tuple[float, float] | None) -> Reduction | None:
    """The numpy path, streamed in blocks; None when NaN/Inf are present or it is empty."""
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    n = flat.size
    if n == 0:
        return None
    lo_data, hi_data = flat.min(), flat.max()
    if not (math.isfinite(float(lo_data)) and math.isfinite(float(hi_data))):
        return None
    first_mean = float(flat.sum(dtype=np.float64 if flat.dtype.kind in "iub" else None)) / n
    lo, hi = value_range if value_range is not None else (float(lo_data), float(hi_data))
    if lo == hi:  # numpy's rule for a constant range
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins + 1, np.int64)
    sum_d = sum_dd = 0.0
    zeros = 0
    fast = flat.dtype == np.float32 and max(abs(lo), abs(hi)) <= 100 * (hi - lo) \
        and hi - lo < FLOAT32_MAX  # else x - lo overflows float32
    for start in range(0, n, BLOCK):
        raw = flat[start:start + BLOCK]
        zeros += raw.size - np.count_nonzero(raw)
        counts += _bin_counts(raw, lo, hi, edges, bins, fast, value_range is not None)
        d = raw.astype(np.float64)
        d -= first_mean
        sum_d += float(d.sum())
        sum_dd += float(np.dot(d, d))
    mean = first_mean + sum_d / n
    var = max(sum_dd / n - (sum_d / n) ** 2, 0.0)
    sum_sq = sum_dd + 2 * first_mean * sum_d + n * first_mean * first_mean
    return Reduction(n, 0, 0, zeros, mean, math.sqrt(var), float(lo_data), float(hi_data),
                     math.sqrt(max(sum_sq, 0.0)), counts[:bins], edges)


def _bin_counts(raw: np.ndarray, lo: float, hi: float, edges: np.ndarray, bins: int,
                fast: bool, clipped: bool) -> np.ndarray:
    """``numpy.histogram``'s uniform-bin rule (on float64 values) for one block; index
    ``bins`` collects the values outside ``[lo, hi]``.

    ``fast``: scale in float32 (the block's own type, no float64 copy); the candidates
    within :data:`NEAR_EDGE_FLOAT32` of an edge are then re-checked against the float64
    edges, so the counts are still numpy's.
    """
    outside = 0
    if clipped:
        inside = (raw >= lo) & (raw <= hi)
        if not inside.all():
            raw = raw[inside]
            outside = inside.size - raw.size
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
