"""Views never keep a model alive on their own: a closed dashboard, or one whose every
browser view was cleared (a re-run cell), frees the model once the user's references are
gone (checked with weakref after gc.collect()); a dashboard still shown keeps a model it was
given inline."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.widgets.session_view import GONE, ModelGoneError


def _model(keras, name):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d"),
                              keras.layers.Dense(2, name="e")], name=name)
    model(np.ones((1, 4), np.float32))
    return model


def _browser(widget, event):
    """What the explorer's view sends when it is rendered or removed."""
    widget._on_custom_msg(widget, {"view": event}, [])


def test_a_closed_dashboard_frees_its_model(keras):
    model = _model(keras, "release_closed")
    dashboard = hw.explore(model)
    dashboard.wait(timeout=30)
    hw.scale_weights(model, "d", 2.0)  # an undo history on the session, too
    alive = weakref.ref(model)
    dashboard.close()
    del model
    gc.collect()
    assert alive() is None
    with pytest.raises(ModelGoneError, match="no longer exists"):
        dashboard.session  # noqa: B018 - the view says what happened


def test_a_dashboard_whose_views_were_cleared_frees_its_model(keras):
    model = _model(keras, "release_cleared")
    dashboard = hw.explore(model)
    dashboard.wait(timeout=30)  # the statistics thread is idle: it holds nothing
    _browser(dashboard.explorer, "shown")
    _browser(dashboard.explorer, "shown")  # a second output of the same dashboard
    _browser(dashboard.explorer, "removed")
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is not None  # one view is still shown: the dashboard holds it
    _browser(dashboard.explorer, "removed")  # the cell ran again: its output was cleared
    gc.collect()
    assert alive() is None
    _browser(dashboard.explorer, "shown")  # shown again (a saved output re-rendered)
    assert dashboard.explorer.message == GONE


def test_a_shown_dashboard_keeps_a_model_it_was_given_inline(keras):
    dashboard = hw.explore(_model(keras, "release_inline"))
    _browser(dashboard.explorer, "shown")
    gc.collect()
    assert dashboard.tree.root.name == "release_inline"
    dashboard.explorer.handle_action({"action": "freeze_all"})  # still acts on it
    assert dashboard.tree.root.trainable_params == 0


def test_a_cleared_dashboard_shown_again_holds_its_model_again(keras):
    model = _model(keras, "release_again")
    dashboard = hw.explore(model)
    _browser(dashboard.explorer, "shown")
    _browser(dashboard.explorer, "removed")
    _browser(dashboard.explorer, "shown")
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is not None and dashboard.explorer.message != GONE


def test_malformed_view_messages_change_nothing(keras):
    model = _model(keras, "release_bad")
    dashboard = hw.explore(model)
    for bad in ({"view": "gone"}, {"view": 3}, {"view": "removed", "x": 1}):
        dashboard.explorer._on_custom_msg(dashboard.explorer, bad, [])
    assert dashboard.explorer.views_shown == 0 and dashboard.session.model is model


def test_a_closed_training_panel_frees_its_model(keras):
    """The panel's figures and picker used to stay registered with their callbacks after
    close(), keeping the panel, its watcher and the model alive."""
    model = _model(keras, "release_panel")
    model.compile(optimizer="sgd", loss="mse")
    callback = hw.watch(model)
    panel = hw.training_panel_for(model)
    model.fit(np.ones((8, 4), np.float32), np.zeros((8, 2), np.float32), epochs=1, verbose=0,
              callbacks=[callback])
    assert panel.callback is callback and len(panel.heatmap.figure["data"]) > 0
    alive = weakref.ref(model)
    panel.close()
    assert panel.callback is None  # it let go of the watcher (and so of the model)
    del model, callback
    gc.collect()
    assert alive() is None


def test_a_closed_dashboard_with_an_activations_panel_frees_its_model(keras):
    """The panel keeps its probe without the model (a Probe holds the model it ran)."""
    model = _model(keras, "release_probe")
    model.compile(loss="mse")
    x = np.ones((2, 4), np.float32)
    dashboard = hw.explore(model, probe=(x, np.zeros((2, 2), np.float32)))
    dashboard.wait(timeout=30)
    panel = dashboard.activations
    assert panel.result.model is model and panel.result.layers  # bound while shown
    alive = weakref.ref(model)
    dashboard.close()
    del model
    gc.collect()
    assert alive() is None
