"""A dashboard's statistics are kept per variable and filled in on a thread: the tree shows
at once, ``Dashboard.wait()`` blocks until every figure is in, a value changed while the
work runs is never shown stale, and a change recomputes only the variables it touched."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model import session_stats


@pytest.fixture
def in_background(monkeypatch):
    """Every model is 'large': nothing is computed before explore() returns, and the
    background work takes one variable per step."""
    monkeypatch.setattr(session_stats, "SYNC_BYTES", -1)
    monkeypatch.setattr(session_stats, "BATCH_BYTES", 1)


def _model(keras, name):
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="a"),
                             keras.layers.Dense(4, name="b"), keras.layers.Dense(3, name="c")],
                            name=name)


def _assert_kept_match_numpy(dashboard):
    known = session_stats.statistics_of(dashboard.session, 64).known(
        dashboard.tree.variables())
    assert set(known) == {v.path for v in dashboard.tree.variables()}
    for v in dashboard.tree.variables():
        values = np.asarray(v.variable.numpy(), np.float64).ravel()
        counts, edges = np.histogram(values, 64)
        s = known[v.path]
        assert s.mean == pytest.approx(values.mean(), abs=1e-7), v.path
        np.testing.assert_array_equal(s.counts, counts, err_msg=v.path)
        np.testing.assert_allclose(s.edges, edges, rtol=1e-12)


def test_wait_blocks_until_every_statistic_is_in(keras, in_background):
    dashboard = hw.explore(_model(keras, "bg_wait"))
    assert dashboard.wait(timeout=30)
    _assert_kept_match_numpy(dashboard)
    overview = dashboard.weights.overview
    assert overview.names == ["a", "b", "c"] and overview.density.max(axis=1).tolist() == [100] * 3
    assert dashboard.weights.progress.value == dashboard.weights.progress.max == 6
    dashboard.close()


def test_a_value_assigned_while_the_work_runs_is_never_shown_stale(keras, in_background,
                                                                   monkeypatch):
    model = _model(keras, "bg_stale")
    kernel = model.get_layer("b").kernel
    read_old, release = threading.Event(), threading.Event()
    real = session_stats.weight_stats

    def slow(variables, **options):
        result = real(variables, **options)  # the old values are read ...
        if any(v.variable is kernel for v in variables):
            read_old.set()
            release.wait(30)  # ... and the result arrives after the change
        return result

    monkeypatch.setattr(session_stats, "weight_stats", slow)
    dashboard = hw.explore(model)
    assert read_old.wait(30)
    assert not dashboard.wait(timeout=0.05)  # the work is held: not done
    kernel.assign(np.full((5, 4), 7.0, np.float32))
    dashboard.session.update("values", [dashboard.tree.find("b").variables[0].path])
    release.set()
    assert dashboard.wait(timeout=30)
    _assert_kept_match_numpy(dashboard)
    path = dashboard.tree.find("b").variables[0].path
    assert session_stats.statistics_of(dashboard.session).known(
        dashboard.tree.variables())[path].min == 7.0
    dashboard.close()


def test_an_edit_recomputes_only_the_variables_it_wrote(keras, reductions_counted):
    model = _model(keras, "bg_edit")
    dashboard = hw.explore(model)
    assert dashboard.wait(timeout=30)
    reduced = reductions_counted()
    hw.scale_weights(model, "b", 2.0)
    assert dashboard.wait(timeout=30)
    assert sorted(reduced) == sorted(v.path for v in dashboard.tree.find("b").variables)
    reduced.clear()
    hw.undo(model)
    assert dashboard.wait(timeout=30)
    assert sorted(reduced) == sorted(v.path for v in dashboard.tree.find("b").variables)
    _assert_kept_match_numpy(dashboard)
    reduced.clear()
    hw.freeze(model, "a")  # flags only: nothing read
    assert dashboard.wait(timeout=30) and reduced == []
    dashboard.close()


def test_after_a_watched_fit_only_what_training_changes_is_recomputed(keras, reductions_counted):
    model = _model(keras, "bg_fit")
    hw.freeze(model, "a")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    dashboard = hw.explore(model)
    assert dashboard.wait(timeout=30)
    reduced = reductions_counted()
    x, y = np.ones((8, 6), np.float32), np.zeros((8, 3), np.float32)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[hw.watch(model)])
    assert dashboard.wait(timeout=30)
    trained = [v.path for name in ("b", "c") for v in dashboard.tree.find(name).variables]
    assert sorted(reduced) == sorted(trained)
    _assert_kept_match_numpy(dashboard)  # the frozen layer's kept figures are still right
    dashboard.close()


def test_the_selected_layer_is_not_read_again_after_an_edit_elsewhere(keras,
                                                                      reductions_counted):
    """The selection's histogram comes from the kept statistics: editing another layer
    reads that layer only (a selected 1 GB embedding was read on every edit)."""
    model = _model(keras, "bg_selected")
    dashboard = hw.explore(model)
    assert dashboard.wait(timeout=30)
    kernel = dashboard.tree.find("a").variables[0].path
    dashboard.weights.selected = kernel
    reduced = reductions_counted()
    hw.scale_weights(model, "c", 3.0)
    assert dashboard.wait(timeout=30)
    assert sorted(reduced) == sorted(v.path for v in dashboard.tree.find("c").variables)
    [bar] = dashboard.weights.selection_traces
    values = np.asarray(model.get_layer("a").kernel.numpy(), np.float64).ravel()
    assert list(bar.y) == np.histogram(values, 64)[0].tolist()
    dashboard.close()
