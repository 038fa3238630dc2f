"""The session's one cache and its one rule: an entry is dropped by the changes it names
("flags", "values") and by a change of the structure, and by nothing else; work that has only
a tree no session keeps computes without keeping."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.session import existing_session
from hubwidgets.model.stats import PLAN_KEY

ENTRIES = {"plain": (), "on_values": ("values",), "on_flags": ("flags",),
           "on_both": ("flags", "values")}


def small_model(keras, name):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"),
                             keras.layers.Dense(2, name="b")], name=name)


def fill(session):
    for key, depends_on in ENTRIES.items():
        session.cache.put(key, f"kept {key}", depends_on=depends_on)


def kept(session):
    return {key for key in ENTRIES if key in session.cache}


def test_each_entry_is_dropped_by_the_changes_it_names(keras):
    model = small_model(keras, "rule")
    session = hw.session_for(model)
    fill(session)
    session.select("rule/a")
    hw.inspect(model)  # nothing changed: the structure is checked, nothing dropped
    assert kept(session) == set(ENTRIES)
    assert session.cache.get("on_values") == "kept on_values"

    hw.freeze(model, "a")
    assert model.get_layer("a").trainable is False
    assert kept(session) == {"plain", "on_values"}

    fill(session)
    hw.scale_weights(model, "rule/b", 2.0)
    assert kept(session) == {"plain", "on_flags"}

    fill(session)
    hw.undo(model)
    assert kept(session) == {"plain", "on_flags"}


def test_a_watched_fit_drops_what_depends_on_the_values(keras):
    model = small_model(keras, "fitted")
    model.compile(optimizer="sgd", loss="mse")
    session = hw.session_for(model)
    fill(session)
    x = np.ones((4, 3), "float32")
    model.fit(x, np.zeros((4, 2), "float32"), epochs=1, verbose=0,
              callbacks=[hw.watch(model)])
    assert kept(session) == {"plain", "on_flags"}


def test_a_structure_change_drops_every_entry(keras):
    model = small_model(keras, "grown")
    session = hw.session_for(model)
    fill(session)
    model.add(keras.layers.Dense(5, name="c"))
    tree = hw.inspect(model)
    assert tree.find("c").params == 2 * 5 + 5
    assert kept(session) == set()


def test_an_unknown_dependency_is_refused_by_name(keras):
    session = hw.session_for(small_model(keras, "typo"))
    with pytest.raises(hw.HubWidgetsError, match="'weights'.*flags, structure, values"):
        session.cache.put("x", 1, depends_on=["weights"])
    with pytest.raises(hw.HubWidgetsError, match="'v'"):
        session.cache.put("x", 1, depends_on=["values", "v"])
    assert "x" not in session.cache
    session.cache.put("x", 1, depends_on="values")  # one change named alone
    hw.scale_weights(session.model, "typo/a", 3.0)
    assert "x" not in session.cache


def _assert_like_numpy(stats, variable):
    values = variable.numpy().astype(np.float64)
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
    assert stats.min == values.min() and stats.max == values.max()


def test_the_statistics_plan_outlives_freezes_edits_and_selections(keras):
    """The plan depends on the structure only: after a freeze, an edit and a selection the
    warm call reads with the same plan, and its figures are numpy's on the new values; a new
    layer makes a new plan that covers it."""
    model = small_model(keras, "planned")
    hw.weight_stats(model)
    session = existing_session(model)
    plan = session.cache.get(PLAN_KEY)
    assert plan is not None and set(plan.paths) == {v.path for v in hw.inspect(model).variables()}
    hw.freeze(model, "a")
    hw.scale_weights(model, "planned/b", -2.0)
    session.select("planned/b")
    stats = hw.weight_stats(model)
    assert session.cache.get(PLAN_KEY) is plan
    _assert_like_numpy(stats["planned/b/kernel"], model.get_layer("b").kernel)
    _assert_like_numpy(stats["planned/a/kernel"], model.get_layer("a").kernel)

    model.add(keras.layers.Dense(3, name="c"))
    stats = hw.weight_stats(model)
    assert session.cache.get(PLAN_KEY) is not plan
    assert "planned/c/kernel" in session.cache.get(PLAN_KEY).paths
    _assert_like_numpy(stats["planned/c/kernel"], model.get_layer("c").kernel)


def test_a_tree_a_structure_change_replaced_is_described_as_it_was(keras):
    """Work on a tree that is no longer its session's computes for that tree (it never
    reads the session's entries, which describe the new tree)."""
    model = small_model(keras, "replaced")
    old = hw.inspect(model)
    model.add(keras.layers.Dense(3, name="c"))
    new = hw.inspect(model)
    assert new is not old
    assert "replaced/c/kernel" in hw.weight_stats(new)
    before = hw.weight_stats(old)
    assert sorted(before) == sorted(v.path for v in old.variables())
    assert "replaced/c/kernel" not in before
    _assert_like_numpy(before["replaced/b/kernel"], model.get_layer("b").kernel)


def test_a_paths_tree_gets_its_statistics_without_a_session(keras, tmp_path):
    model = small_model(keras, "saved")
    path = tmp_path / "saved.keras"
    model.save(path)
    tree = hw.inspect(str(path))
    assert existing_session(tree.obj) is None
    for _ in range(2):
        stats = hw.weight_stats(tree)
        for var in tree.variables():
            _assert_like_numpy(stats[var.path], var.variable)


def test_a_dashboard_of_a_path_keeps_its_plan_in_its_session(keras, tmp_path):
    """A path keeps no session (a string holds nothing): the loaded model does, so the
    dashboard's tree finds its session's cache, and a second look shares that session."""
    model = small_model(keras, "loaded")
    path = tmp_path / "loaded.keras"
    model.save(path)
    dashboard = hw.explore(str(path))
    session = dashboard.session
    assert existing_session(session.model) is session
    assert hw.session_for(session.tree) is session
    hw.weight_stats(session.tree)
    assert PLAN_KEY in session.cache
