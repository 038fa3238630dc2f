"""Models the benchmarks run on, built offline."""

from __future__ import annotations


def resnet50():
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.ResNet50(weights=None)


def many_layers(n: int):
    """A model of ``n`` small Dense layers held in one list (Keras cannot build a functional
    chain that deep: its graph walk recurses once per layer)."""
    import keras
    import numpy as np

    class ManyLayers(keras.Model):
        def __init__(self, count: int, **kwargs):
            super().__init__(**kwargs)
            self.stack = [keras.layers.Dense(2, name=f"dense_{i}") for i in range(count)]

        def call(self, x):
            for layer in self.stack:
                x = layer(x)
            return x

    model = ManyLayers(n, name=f"layers_{n}")
    model(np.zeros((1, 2), "float32"))
    return model
