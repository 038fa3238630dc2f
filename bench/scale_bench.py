"""Billion-parameter models (issue 25): a KerasHub Gemma backbone built from its config in
bfloat16 (no download), explored, edited, snapshotted, against the floor measured in the
same run (one numpy pass over as many bytes as the weights hold) and the kernel's resident
memory before each step.

``python -m bench.scale_bench gemma_2b`` (2.5 B parameters, 5 GB, ~25 s to build and 6 GB
here: only one such process at a time), ``... gemma_100m`` (the same architecture at
~120 M parameters, for the "within 2x between sizes" figure) or ``... tiny`` (a smoke run).
Prints one JSON line; ``python -m bench --scale`` puts both sizes in docs/performance.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

import numpy as np

from .common import emit

CONFIGS = {
    "gemma_2b": dict(vocabulary_size=256_000, num_layers=18, num_query_heads=8,
                     num_key_value_heads=1, hidden_dim=2048, intermediate_dim=32_768,
                     head_dim=256),
    "gemma_100m": dict(vocabulary_size=32_000, num_layers=6, num_query_heads=8,
                       num_key_value_heads=1, hidden_dim=1024, intermediate_dim=8192,
                       head_dim=128),
    "tiny": dict(vocabulary_size=1000, num_layers=2, num_query_heads=2,
                 num_key_value_heads=1, hidden_dim=64, intermediate_dim=128, head_dim=32),
}


class PeakMemory:
    """The kernel's resident memory sampled every 5 ms on a thread: the peak above a
    baseline taken when the block starts."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.base = self.peak = 0

    def __enter__(self) -> "PeakMemory":
        self.base = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def added(self) -> int:
        return self.peak - self.base


def floor_seconds(model) -> float:
    """One numpy pass (max) over every weight's bytes, read in place (bfloat16 as uint16)."""
    import tensorflow as tf

    start = time.perf_counter()
    for w in model.weights:
        value = w.value
        if value.dtype == tf.bfloat16:
            value = tf.bitcast(value, tf.uint16)
        np.max(np.frombuffer(value, value.dtype.as_numpy_dtype))
    return time.perf_counter() - start


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(name: str) -> None:
    import keras
    import keras_hub

    import hubwidgets as hw

    keras.utils.set_random_seed(0)
    build_s, model = timed(lambda: keras_hub.models.GemmaBackbone(**CONFIGS[name],
                                                                  dtype="bfloat16"))
    weight_bytes = sum(int(np.prod(w.shape)) * 2 for w in model.weights)
    floor = min(floor_seconds(model) for _ in range(3))
    summary_s, _ = timed(lambda: model.summary(print_fn=lambda *a, **k: None))

    with PeakMemory() as explore_memory:
        explore_s, dashboard = timed(lambda: hw.explore(model))
        overview_s, done = timed(lambda: dashboard.wait(timeout=600))
    assert done, "the overview did not complete"
    rows = dashboard.weights.overview.density
    assert (rows.max(axis=1) == 100).all(), "an overview row is empty"

    cold_s, _ = timed(lambda: hw.weight_stats(model))
    with PeakMemory() as warm_memory:
        warm = [timed(lambda: hw.weight_stats(model))[0] for _ in range(3)]
    warm_s = float(np.median(warm))

    tree = dashboard.tree
    query = next(n.path for n in tree if n.path.endswith("attention/query"))
    edit_s, _ = timed(lambda: hw.scale_weights(model, query, 2.0))
    undo_s, _ = timed(lambda: hw.undo(model))
    redraw_ok = dashboard.wait(timeout=60)

    lora_s, _ = timed(lambda: model.enable_lora(4))
    refresh_s, _ = timed(dashboard.refresh)
    dashboard.wait(timeout=600)
    assert any(v.path.endswith("lora_kernel_a") for v in dashboard.tree.variables())

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        path = os.path.join(folder, "before.npz")
        with PeakMemory() as snapshot_memory:
            snapshot_s, _ = timed(lambda: hw.snapshot(model, path))
            diff_s, result = timed(lambda: hw.diff(path, model))
    dashboard.close()
    emit({"model": name, "params": int(model.count_params()), "weight_bytes": weight_bytes,
          "build_s": build_s, "floor_s": floor, "summary_s": summary_s,
          "explore_s": explore_s, "overview_s": overview_s,
          "overview_ratio": overview_s / floor,
          "explore_added_bytes": explore_memory.added,
          "memory_bound_bytes": weight_bytes // 10 + 300 * 2**20,
          "weight_stats_cold_s": cold_s, "weight_stats_warm_s": warm_s,
          "warm_ratio": warm_s / floor, "warm_added_bytes": warm_memory.added,
          "edit_s": edit_s, "undo_s": undo_s, "redrawn": bool(redraw_ok),
          "enable_lora_s": lora_s, "refresh_after_lora_s": refresh_s,
          "snapshot_s": snapshot_s, "diff_s": diff_s,
          "snapshot_diff_added_bytes": snapshot_memory.added,
          "diff_changed": int(getattr(result, "changed_count", -1))})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gemma_2b")
