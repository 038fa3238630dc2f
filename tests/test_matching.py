"""Matching names: ``hubwidgets.freeze``, ``hubwidgets.search``, the search box and "Freeze
matches" resolve paths, names and patterns with one matcher (``matching.matching_nodes`` and
its budgeted regular expressions), so "Freeze matches" freezes exactly what the search box
shows, and a catastrophic pattern, a huge string or something not a string answers the same,
in time, with the model unchanged; one ``keras_generation`` for the adapters."""

from __future__ import annotations

import re
import time

import pytest

import hubwidgets as hw
from hubwidgets.model import freeze as freeze_module
from hubwidgets.model import matching
from hubwidgets.model.adapters import keras as keras_adapter
from hubwidgets.model.adapters import registry
from model_state import GENERATIONS, model_state

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


# -- "Freeze matches" freezes what the search box shows ------------------------------------
@pytest.fixture(scope="module")
def named_model(keras):
    names = ["block1_conv", "Block2_conv", "block2_pool", "Block3_DENSE"] + [
        f"dense_{i}" for i in range(20)]
    layers = [keras.layers.Dense(2, name=n) for n in names]
    return keras.Sequential([keras.Input((2,)), *layers], name="nm")


SEARCHES = ["block2", "BLOCK2", "Block2_conv", "conv$", "dense_1", "dense_1$", r"^dense_1\d",
            "DENSE", "_(3|17)$", "dense_[2-4]", "Dense"]


@pytest.mark.parametrize("pattern", SEARCHES)
def test_freeze_matches_freezes_exactly_what_the_search_box_shows(named_model, pattern, keras):
    hw.unfreeze(named_model)
    explorer = hw.LayerExplorer(named_model)
    explorer.query = pattern
    shown = {r["name"] for r in explorer.visible_rows() if r["path"] != "nm"}
    # an independent oracle: Python's re, case-insensitive, on names and class names
    expected = {layer.name for layer in named_model.layers
                if re.search(pattern, layer.name, re.I) or re.search(pattern, "Dense", re.I)}
    assert shown == expected and expected
    explorer.handle_action({"action": "freeze_pattern", "pattern": pattern})
    frozen = {layer.name for layer in named_model.layers if not layer.trainable}
    assert frozen == expected
    assert explorer.message.startswith(f"Froze {len(expected)} layer(s): ")
    # the generated code does the same on a twin model
    twin_layers = [type(layer)(2, name=layer.name) for layer in named_model.layers]
    twin = keras.Sequential([keras.Input((2,)), *twin_layers], name="nm")
    exec(explorer.code, {"model": twin, "hubwidgets": hw})
    assert {layer.name for layer in twin.layers if not layer.trainable} == expected


@pytest.mark.parametrize("generation", GENERATIONS)
def test_dense_1_shows_and_freezes_dense_1_and_dense_10_to_19(generation, request):
    K = request.getfixturevalue(generation)
    model = K.Sequential([K.Input((2,)), *[K.layers.Dense(2, name=f"dense_{i}")
                                           for i in range(20)]], name="dm")
    explorer = hw.LayerExplorer(model)
    explorer.query = "dense_1"
    shown = [r["name"] for r in explorer.visible_rows() if r["path"] != "dm"]
    explorer.handle_action({"action": "freeze_pattern", "pattern": "dense_1"})
    frozen = [layer.name for layer in model.layers if not layer.trainable]
    assert frozen == shown == ["dense_1"] + [f"dense_{i}" for i in range(10, 20)]
    assert explorer.message.startswith("Froze 11 layer(s): dense_1, dense_10, dense_11, ")
    assert hw.inspect(model).root.non_trainable_params == 11 * (2 * 2 + 2)


def test_freeze_matches_of_nothing_changes_nothing(named_model):
    hw.unfreeze(named_model)
    before = model_state(named_model)
    explorer = hw.LayerExplorer(named_model)
    explorer.handle_action({"action": "freeze_pattern", "pattern": "resnet"})
    assert model_state(named_model) == before
    assert explorer.message == "No layer matches 'resnet': nothing was frozen."


# -- regex bombs and huge strings --------------------------------------------------------------
ISSUE_BOMB = r"(\w+\w+)+!"  # the issue's pattern (the regex engine defuses this one)
REAL_BOMB = r"(?:w|ww)+_9"  # exponential in the regex package too on 30 w's


@pytest.fixture(scope="module")
def long_names_model(keras):
    layers = [keras.layers.Dense(2, name="w" * 30 + f"_{i}") for i in range(3)]
    return keras.Sequential([keras.Input((2,)), *layers], name="bomb")


def run_site(model, site, pattern):
    """Run ``pattern`` through one place a user can type it; the text the user reads."""
    if site == "search box":
        explorer = hw.LayerExplorer(model)
        explorer.query = pattern
        return explorer.message, explorer
    if site == "Freeze matches":
        explorer = hw.LayerExplorer(model)
        explorer.handle_action({"action": "freeze_pattern", "pattern": pattern})
        return explorer.message, explorer
    call = {"hw.search": hw.search, "hw.freeze": hw.freeze, "hw.unfreeze": hw.unfreeze}[site]
    try:
        call(model, pattern)
    except (KeyError, ValueError) as exc:
        return (exc.args[0] if isinstance(exc, KeyError) else str(exc)), None
    return "", None


SITES = ["search box", "Freeze matches", "hw.search", "hw.freeze", "hw.unfreeze"]


def run_site_in_time(model, site, pattern):
    """``run_site`` on an unfrozen model: it returns within the budget and changes nothing."""
    hw.unfreeze(model)
    before = model_state(model)
    start = time.monotonic()
    text, explorer = run_site(model, site, pattern)
    assert time.monotonic() - start < BOMB_BUDGET_S
    assert model_state(model) == before
    return text, explorer


@pytest.mark.parametrize("site", SITES)
def test_a_catastrophic_regex_answers_too_slow_in_time(long_names_model, site):
    text, explorer = run_site_in_time(long_names_model, site, REAL_BOMB)
    assert "too slow" in text and "Simplify it" in text
    if site == "search box":
        assert explorer.visible_rows() == []


@pytest.mark.parametrize("site", SITES)
def test_the_issue_regex_bomb_returns_in_time_and_changes_nothing(long_names_model, site):
    text, explorer = run_site_in_time(long_names_model, site, ISSUE_BOMB)
    if site == "search box":  # nothing matches (no "!" in any name): an empty view
        assert (explorer.visible_rows() == [] and text == "") or "too slow" in text
    elif site == "hw.search":
        assert text == "" or "too slow" in text
    else:
        assert "too slow" in text or "No layer" in text


def test_a_search_after_a_too_slow_one_clears_its_error(long_names_model):
    explorer = hw.LayerExplorer(long_names_model)
    explorer.query = REAL_BOMB
    assert "too slow" in explorer.message
    explorer.query = "_1$"
    assert [r["path"] for r in explorer.visible_rows()] == ["bomb", "bomb/" + "w" * 30 + "_1"]
    assert "too slow" not in explorer.message


@pytest.mark.parametrize("length", [1_001, 100_000, 10_000_000])
def test_a_huge_search_box_query_is_refused_quickly(long_names_model, length):
    explorer = hw.LayerExplorer(long_names_model)
    start = time.monotonic()
    explorer.query = "w" * length
    assert time.monotonic() - start < 2.0
    assert f"{length:,} characters long" in explorer.message
    assert explorer.visible_rows() == []


@pytest.mark.parametrize("call", [
    "freeze", "unfreeze",
    "set_trainable", "freeze_up_to"])
def test_a_huge_name_in_the_python_api_is_refused_quickly(long_names_model, call):
    hw.unfreeze(long_names_model)
    before = model_state(long_names_model)
    huge = call + "w" * 300_000  # unique per case: the regex package caches compiled patterns
    start = time.monotonic()
    with pytest.raises((KeyError, ValueError)):
        if call == "set_trainable":
            hw.set_trainable(long_names_model, huge, False)
        else:
            getattr(hw, call)(long_names_model, huge)
    assert time.monotonic() - start < 2.0  # 0.2-0.5 s measured; a regex compile: 3-20 s
    assert model_state(long_names_model) == before


@pytest.mark.parametrize("bad", [None, 3, ["d1"], b"d1"])
def test_a_search_for_something_not_a_string_is_a_clear_type_error(three_dense, bad):
    with pytest.raises(TypeError, match="A search pattern is a string"):
        hw.search(three_dense, bad)


def test_freeze_matches_code_run_where_nothing_matches_freezes_nothing(named_model, keras):
    """The shown code is run later, on a model whose auto-names changed: it must not turn
    into ``freeze(model)``, which freezes every layer."""
    hw.unfreeze(named_model)
    explorer = hw.LayerExplorer(named_model)
    explorer.handle_action({"action": "freeze_pattern", "pattern": "block2"})
    assert "hubwidgets.search(model, 'block2')" in explorer.code
    renamed = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="other")])
    exec(explorer.code, {"model": renamed, "hubwidgets": hw})
    assert all(layer.trainable for layer in renamed.layers)
