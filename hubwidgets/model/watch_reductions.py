"""What one record of :func:`hubwidgets.watch` reduces, in bounded host memory.

Each watched layer's weights are :class:`WatchedWeight` s.  A weight that could train when
``fit`` began keeps one copy of its values at the last record (for ‖Δw‖); a weight that was
frozen keeps only a SHA-256 digest of its bytes, which proves at the next record that it did
not move (then its Δw is exactly 0), and its sum of squares once a layer's ratio needs it.

Host layers are read and reduced a few at a time (:data:`RECORD_BATCH_BYTES` of weights per
batch), by zero-copy views of the variables' buffers (:func:`~.host_stats.host_arrays`) and
the one statistics engine (:func:`~.host_stats.host_reductions`); a layer of several
variables is reduced variable by variable and combined (its histogram in a second pass over
the layer's range), never concatenated.  ‖Δw‖ and the copy's update go block by block.
Layers on a GPU are reduced there (:func:`device_stats`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .host_stats import dot_product

RECORD_BATCH_BYTES = 64 * 2**20
"""A record reads the weights of the host layers in batches of about this many bytes (a
layer larger than this alone): the reads it holds at once are bounded by it (a read is a
view of the variable's buffer, or a copy where TensorFlow makes one)."""

RATIO_BLOCK = 1 << 16
"""Elements compared, subtracted in float64 and copied at a time for ‖Δw‖ (512 KB blocks)."""

DEVICE_DIGEST_BLOCK = 1 << 24
"""Elements of a frozen GPU weight brought to the host at a time for its digest."""

FROZEN_CHANGED = ("a weight that was frozen when fit began changed (something other than the "
                  "optimizer wrote it, or it was unfrozen during fit); the watcher keeps no "
                  "copy of frozen weights, so how far it moved is unknown")
NOT_RECORDED = "update_ratio=False: not recorded"


@dataclass(eq=False)
class WatchedWeight:
    """One watched variable.  ``read`` is what is read (the first replica of a mirrored
    variable); ``previous`` its values at the last record (only for a weight that could
    train when fit began: numpy on the host, a tensor on its GPU); ``digest`` and ``sum_sq``
    (only for a frozen one) the SHA-256 of its bytes at the last record and Σw² then (None
    until a ratio needs it)."""

    variable: Any
    read: Any
    host: bool
    nbytes: int
    trains: bool
    previous: Any = None
    digest: bytes | None = None
    sum_sq: float | None = None

    @property
    def held_bytes(self) -> int:
        """Bytes of ``previous`` (0 when there is none)."""
        p = self.previous
        if p is None:
            return 0
        if isinstance(p, np.ndarray):
            return int(p.nbytes)
        return int(np.prod(p.shape)) * p.dtype.size


def watched_weight(info: Any) -> WatchedWeight:
    """A :class:`WatchedWeight` of a tree's :class:`~.tree.VariableInfo`, ``trains`` read now
    (whether an optimizer step would update it)."""
    from .adapters.common import replica_components

    read = replica_components(info.variable)[0]
    device = str(getattr(read, "device", "") or "").upper()
    return WatchedWeight(info.variable, read, "GPU" not in device and "TPU" not in device,
                         int(info.nbytes), bool(info.trainable))


def host_batches(layers: list[Any], limit: int) -> list[list[Any]]:
    """``layers`` (each with ``weights``) in order, grouped so that a group's weights hold at
    most ``limit`` bytes (a larger layer is a group of its own)."""
    batches: list[list[Any]] = []
    size = 0
    for layer in layers:
        n = sum(w.nbytes for w in layer.weights)
        if not batches or size + n > limit:
            batches.append([])
            size = 0
        batches[-1].append(layer)
        size += n
    return batches


def host_views(weights: list[WatchedWeight]) -> list[np.ndarray]:
    """Each weight's values as a flat array: a view of its buffer where TensorFlow gives one
    (:func:`~.host_stats.host_arrays`), else a copy."""
    from .host_stats import host_arrays

    views = host_arrays([w.read for w in weights])
    return [v if v is not None else np.asarray(w.read.numpy()).reshape(-1)
            for v, w in zip(views, weights, strict=True)]


def digest(flat: np.ndarray) -> bytes:
    """SHA-256 of a flat array's bytes (read in place)."""
    return hashlib.sha256(_bytes_of(flat)).digest()


def digests(flats: list[np.ndarray]) -> list[bytes]:
    """:func:`digest` of each array, several at a time (hashlib releases the GIL)."""
    if len(flats) < 2 or sum(f.nbytes for f in flats) < 16 * 2**20:
        return [digest(f) for f in flats]
    from concurrent.futures import ThreadPoolExecutor

    from .host_stats import THREADS

    with ThreadPoolExecutor(max_workers=max(THREADS, 1)) as pool:
        return list(pool.map(digest, flats))


def _bytes_of(flat: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(flat)
    return flat.view(np.uint8) if flat.size else np.zeros(0, np.uint8)


def sum_of_squares(flat: np.ndarray) -> float:
    """Σw² in float64, a block at a time."""
    total = 0.0
    for start in range(0, flat.size, RATIO_BLOCK):
        block = flat[start:start + RATIO_BLOCK].astype(np.float64)
        total += dot_product(block, block)
    return total


def moved_and_kept(now: np.ndarray, previous: np.ndarray) -> tuple[float, float]:
    """‖now − previous‖² and ‖previous‖² in float64, a block at a time; ``previous`` is
    then overwritten with ``now`` in place (it becomes the copy held, with no second
    allocation).  A block whose bits did not change adds exactly 0 to ‖Δ‖²."""
    bits = f"u{now.itemsize}"
    delta_sq = before_sq = 0.0
    for start in range(0, now.size, RATIO_BLOCK):
        a, b = now[start:start + RATIO_BLOCK], previous[start:start + RATIO_BLOCK]
        before = b.astype(np.float64)
        before_sq += dot_product(before, before)
        if np.array_equal(a.view(bits), b.view(bits)):
            continue
        delta = a.astype(np.float64)
        delta -= before
        delta_sq += dot_product(delta, delta)
        np.copyto(b, a)
    return delta_sq, before_sq


def ratio(delta_sq: float, before_sq: float) -> float:
    """‖Δw‖/‖w‖ from the squares: exactly 0 when nothing moved, inf from zero weights."""
    if delta_sq == 0:
        return 0.0
    return math.sqrt(delta_sq / before_sq) if before_sq > 0 else math.inf


# -- statistics of a layer from its variables' reductions ---------------------------------
def layer_stats(groups: list[list[np.ndarray]], bins: int) -> list[dict[str, Any]]:
    """Mean, std, norm, min, max, a ``numpy.histogram`` and the count of NaN/Inf of each
    group of flat arrays (a layer's weights) taken together, every figure over the finite
    values.  One :func:`~.host_stats.host_reductions` call for every array; a group of
    several arrays is combined from its arrays' reductions, and binned in a second call on
    the group's range (numpy's edges for the whole)."""
    from .host_stats import host_reductions

    firsts = host_reductions([a for group in groups for a in group], bins, None)
    out, at = [], 0
    for group in groups:
        parts = firsts[at:at + len(group)]
        at += len(group)
        if len(group) == 1:
            out.append(_stats_of(parts[0], bins))
        else:
            out.append(_combined(group, parts, bins))
    return out


def _empty_histogram(bins: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(bins, np.int64), np.histogram(np.zeros(0), bins=bins)[1]


def _stats_of(r: Any, bins: int) -> dict[str, Any]:
    finite = r.count - r.nan - r.inf
    counts, edges = r.counts, r.edges
    if len(edges) != bins + 1:  # the histogram could not be made (a range float64 cannot hold)
        counts, edges = np.zeros(bins, np.int64), np.full(bins + 1, math.nan)
    return dict(mean=r.mean if finite else math.nan, std=r.std if finite else math.nan,
                norm=math.inf if r.l2 is None else r.l2, min=r.min if finite else 0.0,
                max=r.max if finite else 0.0, counts=np.asarray(counts, np.int64),
                edges=np.asarray(edges, np.float64), nonfinite=int(r.nan + r.inf))


def _combined(group: list[np.ndarray], parts: list[Any], bins: int) -> dict[str, Any]:
    from .host_stats import histogram_edges, host_reductions

    finite = [r.count - r.nan - r.inf for r in parts]
    nonfinite = int(sum(r.nan + r.inf for r in parts))
    n = sum(finite)
    if n == 0:
        counts, edges = _empty_histogram(bins)
        return dict(mean=math.nan, std=math.nan, norm=0.0, min=0.0, max=0.0, counts=counts,
                    edges=edges, nonfinite=nonfinite)
    present = [(f, r) for f, r in zip(finite, parts, strict=True) if f]
    mean = math.fsum(f * r.mean for f, r in present) / n
    spread = math.fsum(f * (r.std * r.std + (r.mean - mean) ** 2) for f, r in present)
    norms = [r.l2 for _, r in present]
    norm = math.inf if None in norms else math.sqrt(math.fsum(x * x for x in norms))
    lo, hi = min(r.min for _, r in present), max(r.max for _, r in present)
    edges, _ = histogram_edges(lo, hi, bins)
    if edges is None:
        return dict(mean=mean, std=math.sqrt(max(spread / n, 0.0)), norm=norm, min=lo, max=hi,
                    counts=np.zeros(bins, np.int64), edges=np.full(bins + 1, math.nan),
                    nonfinite=nonfinite)
    # an array whose own histogram is on the layer's edges (it holds the layer's min and
    # max: a kernel beside a small bias) is not binned again; the others are, on them
    again = [i for i, (f, r) in enumerate(zip(finite, parts, strict=True))
             if f and not np.array_equal(r.edges, edges)]
    counts = np.zeros(bins, np.int64)
    for i, (f, r) in enumerate(zip(finite, parts, strict=True)):
        if f and i not in again:
            counts += np.asarray(r.counts, np.int64)
    if again:
        for r in host_reductions([group[i] for i in again], bins, (lo, hi)):
            counts += np.asarray(r.counts, np.int64)
    return dict(mean=mean, std=math.sqrt(max(spread / n, 0.0)), norm=norm, min=lo, max=hi,
                counts=counts, edges=np.asarray(edges, np.float64), nonfinite=nonfinite)


# -- weights on a GPU: reduced where they live ----------------------------------------------
def device_copy(variable: Any) -> Any:
    """One copy of a variable's value where it lives: numpy on the host, a tensor on a GPU."""
    import tensorflow as tf

    if not _is_on_gpu(variable):
        return np.array(variable.numpy(), copy=True)
    with tf.device(variable.device):
        return tf.identity(variable)


def _is_on_gpu(variable: Any) -> bool:
    device = str(getattr(variable, "device", "") or "").upper()
    return "GPU" in device or "TPU" in device


def device_moved(variable: Any, previous: Any) -> tuple[float, float]:
    """‖now − previous‖² and ‖previous‖² reduced on the variable's device."""
    import tensorflow as tf

    with tf.device(variable.device):
        x = tf.reshape(tf.cast(tf.convert_to_tensor(variable), tf.float64), [-1])
        p = tf.reshape(tf.cast(previous, tf.float64), [-1])
        return (float(tf.reduce_sum(tf.square(x - p))), float(tf.reduce_sum(tf.square(p))))


def device_sum_of_squares(variable: Any) -> float:
    """Σw² reduced on the variable's device."""
    import tensorflow as tf

    with tf.device(variable.device):
        x = tf.cast(tf.convert_to_tensor(variable), tf.float64)
        return float(tf.reduce_sum(tf.square(x)))


def device_digest(variable: Any) -> bytes:
    """SHA-256 of a GPU variable's bytes, brought to the host a block at a time (the same
    digest as :func:`digest` of its host copy)."""
    import tensorflow as tf

    total = hashlib.sha256()
    with tf.device(variable.device):
        flat = tf.reshape(tf.convert_to_tensor(variable), [-1])
        size = int(flat.shape[0])
        for start in range(0, size, DEVICE_DIGEST_BLOCK):
            block = np.asarray(flat[start:start + DEVICE_DIGEST_BLOCK].numpy()).reshape(-1)
            total.update(_bytes_of(block))
    return total.digest()


def device_stats(variables: list[Any], bins: int) -> dict[str, Any]:
    """The statistics of :func:`layer_stats` reduced on the variables' device; only scalars
    and counts move."""
    import tensorflow as tf

    sums, sqs, los, his, counts_n, flats = [], [], [], [], [], []
    for var in variables:
        with tf.device(var.device):
            x = tf.reshape(tf.cast(tf.convert_to_tensor(var), tf.float32), [-1])
            ok = tf.math.is_finite(x)
            xf = tf.boolean_mask(x, ok)
            flats.append(xf)
            sums.append(tf.reduce_sum(tf.cast(xf, tf.float64)))
            sqs.append(tf.reduce_sum(tf.square(tf.cast(xf, tf.float64))))
            los.append(tf.reduce_min(xf) if tf.size(xf) > 0 else tf.constant(np.inf, tf.float32))
            his.append(tf.reduce_max(xf) if tf.size(xf) > 0 else tf.constant(-np.inf, tf.float32))
            counts_n.append((tf.size(xf), tf.size(x)))
    count = int(sum(int(c) for c, _ in counts_n))
    nonfinite = int(sum(int(t) for _, t in counts_n)) - count
    lo = float(min(float(v) for v in los)) if count else 0.0
    hi = float(max(float(v) for v in his)) if count else 0.0
    hi_edge = hi if hi > lo else lo + 1e-12
    counts = np.zeros(bins, dtype=np.int64)
    for xf, var in zip(flats, variables, strict=True):
        with tf.device(var.device):
            counts += tf.histogram_fixed_width(tf.cast(xf, tf.float64), [lo, hi_edge],
                                               nbins=bins).numpy()
    total = float(sum(float(s) for s in sums))
    sq = float(sum(float(s) for s in sqs))
    mean = total / count if count else math.nan
    var = max(sq / count - mean * mean, 0.0) if count else math.nan
    return dict(mean=mean, std=math.sqrt(var) if count else math.nan, norm=math.sqrt(sq),
                min=lo, max=hi, counts=counts, edges=np.linspace(lo, hi_edge, bins + 1),
                nonfinite=nonfinite)
