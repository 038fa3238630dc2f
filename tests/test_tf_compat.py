"""TensorFlow's private modules are used in one place (hubwidgets.model.tf_compat), each
with a public fallback; with the fallbacks forced, every figure and tree is the same."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model import host_stats, tf_compat

PACKAGE = Path(hw.__file__).parent


def test_private_tensorflow_is_imported_in_one_module_only():
    private = re.compile(r"(from|import)\s+tensorflow\.python|execute\.execute\(")
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if private.search(p.read_text()))
    assert users == ["model/tf_compat.py"]


def _stats(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.NonFiniteWeightsWarning)
        return {p: (s.count, s.mean, s.std, s.min, s.max, s.counts.tolist())
                for p, s in hw.weight_stats(model).items()}


def test_statistics_are_the_same_on_the_public_fallbacks(keras, monkeypatch):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, name="f32"),
                              keras.layers.Dense(3, name="bf16", dtype="bfloat16")],
                             name="compat_stats")
    private = [_stats(model), _stats(model)]  # the first read one by one, then batched
    monkeypatch.setattr(tf_compat, "use_private", False)
    handles = [v.value.handle if hasattr(v.value, "handle") else v.handle
               for v in model.weights[:2]]
    assert tf_compat.read_variables(handles, ()) is None  # the caller reads one by one
    public = [_stats(model), _stats(model)]
    assert public == private
    from hubwidgets.model.adapters.common import backing_variable

    for v in model.weights:  # each read by the public read: the same values
        np.testing.assert_array_equal(
            np.asarray(host_stats.host_array(backing_variable(v))).astype(np.float64),
            np.asarray(v.numpy()).astype(np.float64).ravel())


def test_restored_objects_walk_the_same_on_the_public_fallbacks(tf, text_module, monkeypatch):
    private = hw.inspect(tf.saved_model.load(text_module)).summary()
    monkeypatch.setattr(tf_compat, "use_private", False)
    assert tf_compat.is_trackable(tf.Module()) and not tf_compat.is_trackable(object())
    assert tf_compat.autotrackable_class() is tf.Module
    assert hw.inspect(tf.saved_model.load(text_module)).summary() == private


@pytest.mark.parametrize("flag", [True, False])
def test_is_trackable_agrees_with_tensorflow(tf, keras, monkeypatch, flag):
    monkeypatch.setattr(tf_compat, "use_private", flag)
    for obj in (tf.Module(), tf.Variable(1.0), keras.layers.Dense(2), tf.train.Checkpoint()):
        assert tf_compat.is_trackable(obj)
    for obj in (object(), 3, "text", np.zeros(2)):
        assert not tf_compat.is_trackable(obj)
