"""Statistics of variables that live in host memory, computed in place with numpy.

A CPU variable is read through ``memoryview``, which shares the variable's buffer, so
nothing is copied.  The work
is streamed in blocks of :data:`BLOCK` elements: every temporary (the float64 copy of a
block, bin indices) stays a few hundred kilobytes, whatever the variable's size.

Passes: min and max (which also reveal NaN/Inf: a variable with any goes to the TensorFlow
kernel instead), a float32 sum for a first mean, then one blocked pass for the centered
moments (float64), the zero count and the histogram, which follows ``numpy.histogram`` on
float64 values, bin edge corrections included.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK = 1 << 16
NEAR_EDGE = 1e-6  # in bins: far wider than float64 rounding, so no misbinned value escapes
NEAR_EDGE_FLOAT32 = 1e-3  # in bins: wider than float32 rounding when |lo|, |hi| <= 100 x width
HOST_KINDS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "uint32", "uint64", "bool")


def host_array(var: object) -> np.ndarray | None:
    """The variable's values as a flat numpy view, when it lives on the host; else None."""
    device = str(getattr(var, "device", "") or "")
    if device and "CPU" not in device.upper():
        return None
    dtype = getattr(getattr(var, "dtype", None), "name", "")
    if dtype not in HOST_KINDS:
        return None
    try:  # memoryview of a CPU tensor is zero-copy; .numpy() would copy the whole variable
        tensor = var.value() if hasattr(var, "value") else var
        values = np.asarray(memoryview(tensor))
    except (TypeError, ValueError, AttributeError):
        return None
    return values.reshape(-1)


def host_moments(flat: np.ndarray, bins: int,
                 value_range: tuple[float, float] | None) -> dict | None:
    """count, mean, std, min, max, l2, zeros, histogram; None when NaN/Inf are present."""
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
    fast = flat.dtype == np.float32 and max(abs(lo), abs(hi)) <= 100 * (hi - lo)
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
    return {"count": n, "mean": mean, "std": math.sqrt(var), "min": float(lo_data),
            "max": float(hi_data), "l2": math.sqrt(max(sum_sq, 0.0)), "zeros": zeros,
            "counts": counts[:bins], "edges": edges}


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
