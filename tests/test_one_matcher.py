"""One matcher: ``hubwidgets.freeze`` resolves paths, names and patterns with
``matching.matching_nodes`` and its budgeted regular expressions, so a catastrophic pattern
answers exactly as the search box does; one ``keras_generation`` for the adapters."""

from __future__ import annotations

import time

import pytest

import hubwidgets as hw
from hubwidgets.model import freeze as freeze_module
from hubwidgets.model import matching
from hubwidgets.model.adapters import keras as keras_adapter
from hubwidgets.model.adapters import registry

SLOW_CLASS = "W" * 34 + "Dense"
BOMB = r"(?:W|WW)+Z"  # no Z anywhere: exponential backtracking on the class name only
BOMB_BUDGET_S = 4.0  # the budget is 0.5 s; the regex package overshoots it on busy cores


@pytest.fixture(scope="module")
def slow_class_model(keras):
    """A layer whose class name (not its path) makes BOMB backtrack."""
    layer_class = type(SLOW_CLASS, (keras.layers.Dense,), {})
    return keras.Sequential([keras.Input((2,)), layer_class(2, name="x")], name="net")


def flags(model):
    return [(v.path, v.trainable) for v in hw.inspect(model).variables()]


@pytest.mark.parametrize("action", [hw.freeze, hw.unfreeze])
def test_a_pattern_too_slow_on_a_class_name_fails_like_the_search_box(slow_class_model,
                                                                      action):
    before = flags(slow_class_model)
    with pytest.raises(hw.SearchTooSlowError) as searched:
        hw.search(slow_class_model, BOMB)
    start = time.monotonic()
    with pytest.raises(hw.SearchTooSlowError) as frozen:
        action(slow_class_model, BOMB)
    assert time.monotonic() - start < BOMB_BUDGET_S
    assert str(frozen.value) == str(searched.value)
    assert "too slow" in str(frozen.value) and "Simplify it" in str(frozen.value)
    assert flags(slow_class_model) == before


def test_a_class_name_is_matched_whole(slow_class_model):
    tree = hw.inspect(slow_class_model)
    assert [n.path for n in matching.matching_nodes(tree, ["W+Dense"])] == ["net/x"]
    assert [n.path for n in matching.matching_nodes(tree, ["(?i)w+dense"])] == ["net/x"]
    with pytest.raises(KeyError):  # a class-name pattern must match the whole name
        matching.matching_nodes(tree, ["WDens"])


def test_freeze_and_the_search_box_share_one_matcher():
    assert freeze_module.matching_nodes is matching.matching_nodes
    assert freeze_module.outermost is matching.outermost
    assert not hasattr(freeze_module, "_fullmatch")


def test_there_is_one_keras_generation(keras, tf_keras):
    assert registry.keras_generation is keras_adapter.keras_generation
    assert not hasattr(registry, "is_keras_layer")
    assert registry.keras_generation(keras.layers.Dense(1)) == "Keras 3"
    assert registry.keras_generation(tf_keras.layers.Dense(1)) == "tf_keras"
    assert registry.keras_generation(object()) is None
