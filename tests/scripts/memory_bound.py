"""Run by tests/test_memory_bound.py in a fresh process: the peak resident memory that
explore() + every statistic, weight_stats, snapshot(model, path) and diff(path, model) add to
a model of about 0.5 GB, printed as one JSON line."""

import json
import os
import sys
import tempfile
import threading

import numpy as np
import psutil


def itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def main(dtype: str) -> None:
    import keras

    import hubwidgets as hw

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,), dtype="int32"),
                              keras.layers.Embedding(120_000, 1024, dtype=dtype, name="table"),
                              keras.layers.Dense(16, dtype=dtype, name="head")], name="half_gb")
    weight_bytes = sum(int(np.prod(w.shape)) * itemsize(w.dtype) for w in model.weights)
    tiny = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    warm = hw.explore(tiny)  # the widget libraries' first use, outside the measure
    warm.wait()
    warm.close()
    with tempfile.TemporaryDirectory() as folder:
        hw.diff(hw.snapshot(tiny, os.path.join(folder, "t.npz")), tiny)

    process = psutil.Process()
    base = process.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    dashboard = hw.explore(model)
    assert dashboard.wait(timeout=300)
    hw.weight_stats(model)
    with tempfile.TemporaryDirectory() as folder:
        path = hw.snapshot(model, os.path.join(folder, "s.npz")).source
        assert not hw.diff(path, model).changed
    stop.set()
    sampler.join()
    print(json.dumps({"weight_bytes": weight_bytes, "added": peak[0] - base}))


if __name__ == "__main__":
    main(sys.argv[1])
