"""The "Activations" tab: explore(model, probe=...) draws the probe's numbers, through a
recording comm (what the browser would receive)."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from recording_comm import recording_comms


@pytest.fixture
def frozen_base(keras):
    keras.utils.set_random_seed(4)
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(5, activation="tanh", name="hidden")(h)
    out = keras.layers.Dense(3, name="head")(h)
    model = keras.Model(inp, out, name="frozen_base")
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    bias[:4] = -1e4  # 4 of 6 channels dead
    conv.set_weights([kernel, bias])
    conv.trainable = False
    return model


def _batch(keras):
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 8, 8, 2)).astype("f4"), rng.normal(size=(4, 3)).astype("f4")


def test_explore_with_a_probe_shows_the_activations_tab(keras, frozen_base):
    x, y = _batch(keras)
    result = hw.probe(frozen_base, x, y, loss="mse")
    with recording_comms() as recorder:
        dashboard = hw.explore(frozen_base, probe=result)
    [tabs] = dashboard.children
    assert [tabs.get_title(i) for i in range(len(tabs.children))] == ["Model", "Activations"]
    panel = dashboard.activations
    assert tabs.children[1] is panel and recorder.bytes_sent() > 0

    [heat] = panel.activations_figure.data
    flat_dead = result.layers["frozen_base/flat"].dead_fraction  # conv's dead channels, and more
    assert list(heat.y) == ["conv  ☠ 67% dead", f"flat  ☠ {flat_dead:.0%} dead", "hidden", "head"]
    density = np.asarray(heat.z)
    assert density.shape == (4, 40) and (density.max(axis=1) == 100).all()
    # the conv row: 2/3 of its values are exactly 0, so its peak is the bin holding 0
    assert heat.x[int(np.argmax(density[0]))] == pytest.approx(0, abs=float(heat.x[1] - heat.x[0]))

    [bars] = panel.gradients_figure.data
    labels, norms = list(bars.y), list(bars.x)
    assert labels == ["conv ❄", "hidden", "head"]
    assert norms[0] == 0.0 and bars.marker.color[0] == "#9e9e9e"
    grads = result.layer_gradients()
    assert norms[1] == pytest.approx(grads["frozen_base/hidden"][0]) and norms[1] > 0

    # the feature maps of the convolution, sample 0 then sample 2, exactly the layer's output
    assert panel.feature_layer == "frozen_base/conv"
    conv_out = keras.Model(frozen_base.inputs, frozen_base.get_layer("conv").output)(x).numpy()
    [maps] = panel.maps_figure.data
    image = np.asarray(maps.z, dtype=float)
    np.testing.assert_array_equal(image[:6, :6], conv_out[0, ..., 0])
    np.testing.assert_array_equal(image[:6, 7:13], conv_out[0, ..., 1])
    panel.sample = 2
    [maps] = panel.maps_figure.data
    np.testing.assert_array_equal(np.asarray(maps.z, dtype=float)[7:13, 7:13], conv_out[2, ..., 4])
    assert panel.maps_figure.figure["data"]  # kept in the widget state (Voilà, saved state)

    # the explorer's rows carry the marks: conv and flat dead, no mark elsewhere
    rows = {r["path"]: r["badges"] for r in dashboard.explorer.visible_rows()}
    assert "dead 67%" in rows["frozen_base/conv"]
    assert f"dead {flat_dead:.0%}" in rows["frozen_base/flat"]
    assert not any(b.startswith(("dead", "saturated")) for b in rows["frozen_base/hidden"])
    dashboard.close()


def test_marks_leave_the_explorer_when_the_weights_change(keras, frozen_base):
    x, _ = _batch(keras)
    dashboard = hw.explore(frozen_base, probe=x)
    badges = {r["path"]: r["badges"] for r in dashboard.explorer.visible_rows()}
    assert "dead 67%" in badges["frozen_base/conv"]
    dashboard.refresh()  # e.g. after training: the probe no longer describes the model
    rows = {r["path"]: r["badges"] for r in dashboard.explorer.visible_rows()}
    assert not any(b.startswith("dead") for b in rows["frozen_base/conv"])
    dashboard.close()


def test_explore_probes_a_batch_and_a_row_click_selects_the_layer(keras, frozen_base):
    x, _ = _batch(keras)
    dashboard = hw.explore(frozen_base, probe=x)
    panel = dashboard.activations
    assert panel.result.gradients is None and panel.gradients_figure not in panel.children[0].children

    class Points:
        ys = [panel.activations_figure.data[0].y[2]]

    panel._on_row_click(None, Points, None)
    assert dashboard.session.selection == "frozen_base/hidden"
    dashboard.explorer.handle_action({"action": "select", "path": "frozen_base/conv"})
    assert panel.feature_layer == "frozen_base/conv"
    dashboard.close()


def test_bad_probe_input_raises_before_any_view(keras, frozen_base):
    with pytest.raises(hw.HubWidgetsError, match="expects"):
        hw.explore(frozen_base, probe=np.zeros((2, 5, 5, 2), "f4"))


def test_layer_names_are_text_not_html(keras):
    inp = keras.Input((3,))
    out = keras.layers.Dense(2, activation="relu", name="<img src=x onerror=alert(1)>")(inp)
    model = keras.Model(inp, out, name="names")
    model.compile(loss="mse")
    dashboard = hw.explore(model, probe=(np.ones((2, 3), "f4"), np.ones((2, 2), "f4")))
    panel = dashboard.activations
    for label in [*panel.activations_figure.data[0].y, *panel.gradients_figure.data[0].y]:
        assert "<img" not in label and label.startswith("&lt;img")
    dashboard.close()


def test_the_theme_is_left_to_each_view(keras, frozen_base):
    """The figures' views style them from their own page's theme (figure.js): the state
    carries no template, and no widget of the panel holds a theme."""
    x, y = _batch(keras)
    frozen_base.compile(loss="mse")
    dashboard = hw.explore(frozen_base, probe=(x, y))
    panel = dashboard.activations
    assert [w for w in panel.children if "theme" in w.trait_names()] == []
    for fig in panel.figures:
        assert "template" not in fig.drawn["layout"]
    dashboard.close()
