"""Peak resident memory added by ``hubwidgets.probe`` against the model's largest activation
(the issue's bound: at most 3x the largest activation + 400 MB; keeping every activation
would cost their sum).  ``python -m bench.probe_bench resnet50`` (ResNet50, a batch of 4 at
224 px) or ``python -m bench.probe_bench stack LAYERS SIDE BATCH`` (1x1 convolutions on
SIDE x SIDE x 16 maps, each as large as the input).  Add ``grad`` to probe with targets.
"""

from __future__ import annotations

import gc
import sys

import numpy as np

from .common import emit
from .memory_bench import PeakRSS

OVERHEAD = 400 * 2**20


def stack(layers: int, side: int):
    import keras

    inp = keras.Input((side, side, 16))
    h = inp
    for i in range(layers):
        h = keras.layers.Conv2D(16, 1, activation="relu", name=f"conv{i}")(h)
    out = keras.layers.Dense(1, name="head")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out, name="stack")


def main(argv: list[str]) -> None:
    import hubwidgets as hw

    grad = "grad" in argv
    argv = [a for a in argv if a != "grad"]
    if argv[0] == "resnet50":
        from .models import resnet50

        model, batch, shape = resnet50(), 4, (224, 224, 3)
    else:
        layers, side, batch = (int(a) for a in argv[1:4])
        model, shape = stack(layers, side), (side, side, 16)
    x = np.random.default_rng(0).normal(size=(batch, *shape)).astype("float32")
    y = np.zeros((batch, *model.outputs[0].shape[1:]), "float32") if grad else None
    warm = hw.probe(model, x[:1], None if y is None else y[:1], loss="mse")  # kernels, imports
    sizes = [s.size * 4 * batch for s in warm.layers.values()]
    del warm
    gc.collect()
    with PeakRSS() as peak:
        result = hw.probe(model, x, y, loss="mse")
    largest, total = max(sizes), sum(sizes)
    added = peak.peak - peak.start
    emit({"layers": len(result.layers), "largest_activation_bytes": largest,
          "all_activations_bytes": total, "peak_added_bytes": added,
          "bound_bytes": 3 * largest + OVERHEAD, "met": added <= 3 * largest + OVERHEAD})


if __name__ == "__main__":
    main(sys.argv[1:])
