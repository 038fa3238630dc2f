"""diff and watch on a LoRA run: the adapters move, the base kernels and quantized codes stay
bit-identical, and the audit says why."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.widgets.training import audit_html
from keras_hub_models import gemma, sgd_step

pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def test_diff_of_a_quantized_lora_backbone_says_why_the_base_stayed():
    model = gemma()
    model.quantize("int8")
    model.enable_lora(2)
    before = hw.snapshot(model)
    for _ in range(2):  # two steps: B moves first, then A too
        sgd_step(model)
    d = hw.diff(before, model)
    assert d.changed and all("lora_kernel_" in p for p in d.changed)
    assert any(p.endswith("lora_kernel_a") for p in d.changed)
    assert d.frozen_changed == []
    lora_layers = [l for l in model._flatten_layers() if getattr(l, "lora_enabled", False)]
    bases = [i for i in d.frozen_by_design if "LoRA base kernel" in i.reason]
    assert len(bases) == len(lora_layers) == 4
    assert all(not d[i.path].changed for i in d.frozen_by_design)
    codes = [i for i in d.frozen_by_design if "int8 codes" in i.reason]
    assert len(codes) >= 6  # key, attention_output and the three ffw kernels, per block
    text = d.summary()
    assert "Frozen by design, unchanged bit for bit: " in text and "enable_lora froze it" in text


def test_watch_of_a_lora_fit_audits_the_base(keras):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="a"),
                              keras.layers.Dense(2, name="b")], name="watched_lora")
    hw.enable_lora(model, "a", 2)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    base = np.array(model.get_layer("a")._kernel.numpy())
    rng = np.random.default_rng(0)
    cb = hw.watch(model)
    model.fit(rng.normal(size=(16, 5)).astype("float32"),
              rng.normal(size=(16, 2)).astype("float32"), epochs=2, verbose=0, callbacks=[cb])
    np.testing.assert_array_equal(model.get_layer("a")._kernel.numpy(), base)
    [item] = cb.diff.frozen_by_design
    assert item.path.endswith("a/kernel") and "LoRA base kernel of 'a'" in item.reason
    assert "Frozen by design" in audit_html(cb.diff)
