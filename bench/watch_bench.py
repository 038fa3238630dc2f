"""Overhead of ``hubwidgets.watch`` (defaults: every epoch, update ratios, ``callback.diff``)
on ``fit``, against the same ``fit`` with no callback and with
``keras.callbacks.TensorBoard(histogram_freq=1)`` (needs the ``bench`` extra: tensorboard),
all in one process so the ratios share the machine's state.

Model: a ~1M-parameter CNN with BatchNorm; data: 2,048 random 32x32x3 images, 10 classes.
Each repetition runs the three conditions back to back on one compiled model after a
warm-up fit, watch in the middle and the two baselines on either side in turn (so a drift
of the machine's speed hits both alike).  Three figures per callback, each the median over
repetitions of that repetition's own ratio to its no-callback fit: wall time end to end (the
honest number, but on a shared machine its noise can exceed the effect), CPU time of the
whole process (every thread; far steadier, and it counts work a callback causes outside its
hooks), and the time spent inside the callback's own hooks as a share of its fit (it misses
costs caused outside the hooks, such as the per-batch synchronisation that TensorBoard's
batch hooks impose: it under-states TensorBoard, never watch, which defines no batch hook by
default).  Prints one JSON line.
``python -m bench.watch_bench [repetitions] [epochs]``
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time

from .common import emit


def cnn():
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers

    def block(x, filters, stride=1, pool=False):
        x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        return L.MaxPooling2D()(x) if pool else x

    inputs = keras.Input((32, 32, 3))
    x = block(inputs, 32, stride=2)
    x = block(x, 64, pool=True)
    x = block(x, 128)
    x = block(x, 256, pool=True)
    x = block(x, 256)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10)(x)
    model = keras.Model(inputs, outputs, name="cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main(repetitions: int = 3, epochs: int = 3) -> None:
    import keras
    import numpy as np

    import hubwidgets as hw

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=2048)
    model = cnn()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # warm-up: traces the train step

    hook_s = {"watch": 0.0, "tensorboard": 0.0}

    def timed(cb, label):
        """Accumulate the seconds spent in the hooks the callback's class defines."""
        base = keras.callbacks.Callback
        for name in dir(base):
            if name.startswith("on_") and getattr(type(cb), name) is not getattr(base, name):
                method = getattr(cb, name)

                def wrapper(*args, _method=method, **kwargs):
                    start = time.perf_counter()
                    try:
                        return _method(*args, **kwargs)
                    finally:
                        hook_s[label] += time.perf_counter() - start

                setattr(cb, name, wrapper)
        return cb

    cpu: dict[str, list[float]] = {"none": [], "watch": [], "tensorboard": []}

    def fit(callbacks, label):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks)
        cpu[label].append(time.process_time() - start_cpu)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"none": [], "watch": [], "tensorboard": []}
    recorded = 0
    with tempfile.TemporaryDirectory() as logs:
        def callbacks(label):
            if label == "watch":
                return [timed(hw.watch(model), "watch")]
            if label == "tensorboard":
                return [timed(keras.callbacks.TensorBoard(log_dir=logs, histogram_freq=1),
                              "tensorboard")]
            return []

        for rep in range(repetitions):
            # watch always in the middle, the baselines on either side in turn, so that a
            # drift of the machine's speed within a repetition hits both ratios alike
            order = ("none", "watch", "tensorboard") if rep % 2 == 0 \
                else ("tensorboard", "watch", "none")
            for label in order:
                gc.collect()
                cbs = callbacks(label)
                times[label].append(fit(cbs, label))
                if label == "watch":
                    recorded = len(cbs[0].history)
    med = {k: statistics.median(v) for k, v in times.items()}
    # each repetition's own ratio (its fits ran next to each other), then their median:
    # steadier than the ratio of medians when the machine's speed drifts between repetitions
    paired = {k: statistics.median(t / n for t, n in zip(times[k], times["none"]))
              for k in ("watch", "tensorboard")}
    # CPU time (every thread of the process) is far less sensitive to other tenants of the
    # machine than wall time: the work a callback adds, paired the same way
    paired_cpu = {k: statistics.median(t / n for t, n in zip(cpu[k], cpu["none"]))
                  for k in ("watch", "tensorboard")}
    emit({"params": model.count_params(), "epochs": epochs, "repetitions": repetitions,
          "fit_none_s": med["none"], "fit_watch_s": med["watch"],
          "fit_tensorboard_s": med["tensorboard"],
          "watch_overhead": paired["watch"] - 1,
          "tensorboard_overhead": paired["tensorboard"] - 1,
          "watch_cpu_overhead": paired_cpu["watch"] - 1,
          "tensorboard_cpu_overhead": paired_cpu["tensorboard"] - 1,
          "watch_overhead_of_medians": med["watch"] / med["none"] - 1,
          "tensorboard_overhead_of_medians": med["tensorboard"] / med["none"] - 1,
          "watch_vs_tensorboard": med["watch"] / med["tensorboard"],
          "watch_records": recorded,
          "watch_hooks_share": hook_s["watch"] / sum(times["watch"]),
          "tensorboard_hooks_share": hook_s["tensorboard"] / sum(times["tensorboard"]),
          "watch_hooks_s_per_fit": hook_s["watch"] / repetitions,
          "tensorboard_hooks_s_per_fit": hook_s["tensorboard"] / repetitions,
          "all_none_s": times["none"], "all_watch_s": times["watch"],
          "all_tensorboard_s": times["tensorboard"], "all_cpu_s": cpu})


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
