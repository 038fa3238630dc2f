"""The overview heatmap, the figure's widget state and the theme: driven from Python, checked
against numpy and the live model (the browser side is tests/test_browser.py)."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.widgets import overview as ov
from figure_state import state_data, state_layout
from model_state import GENERATIONS, repeated_names_model


@pytest.fixture(scope="module")
def conv_bn(keras):
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(3, name="<b>head"),
    ], name="convnet")


def test_each_layer_is_shown_by_its_kernel_never_a_batchnorm_gamma(conv_bn):
    tree = hw.inspect(conv_bn)
    picked = {node.name: ov.representative_variable(node) for node in tree if node.variables}
    assert {name: v.name.split("/")[-1] for name, v in picked.items()} == {
        "conv": "kernel", "bn": "beta", "<b>head": "kernel"}
    assert ov.representative_variable(tree.find("convnet/flat")) is None


def test_rebin_keeps_every_count_and_matches_numpy_on_the_same_edges(conv_bn):
    values = conv_bn.get_layer("conv").kernel.numpy().ravel()
    stats = hw.weight_stats(conv_bn)["convnet/conv/kernel"]
    # on its own edges: numpy's histogram, exactly
    assert ov.rebin(stats, stats.edges).tolist() == np.histogram(values, stats.edges)[0].tolist()
    # on wider shared edges: nothing lost, nothing outside the values' range
    edges = np.linspace(-2 * abs(values).max(), 2 * abs(values).max(), 33)
    moved = ov.rebin(stats, edges)
    assert moved.sum() == pytest.approx(values.size)
    outside = (edges[1:] < values.min()) | (edges[:-1] > values.max())
    assert moved[outside].sum() == 0
    # narrower edges: what falls beyond counts in the end bins
    narrow = np.linspace(-abs(values).max() / 4, abs(values).max() / 4, 9)
    assert ov.rebin(stats, narrow).sum() == pytest.approx(values.size)


def test_overview_rows_follow_the_model_and_every_row_peaks_at_100(conv_bn):
    tree = hw.inspect(conv_bn)
    stats = hw.weight_stats(tree)
    view = ov.build_overview(tree, stats, bins=16)
    assert view.names == ["conv", "bn", "<b>head"]
    assert view.paths == ["convnet/conv", "convnet/bn", "convnet/<b>head"]
    assert view.density.dtype == np.uint8 and view.density.shape == (3, 16)
    assert view.density.max(axis=1).tolist() == [100, 100, 100]
    # beta starts at zeros: one bin holds it all, the one around 0
    [bn] = np.flatnonzero(view.density[1])
    assert view.centers[bn] - (view.centers[1] - view.centers[0]) <= 0 <= view.centers[bn] + (
        view.centers[1] - view.centers[0])
    assert view.row_of("convnet/bn/moving_mean") == 1 and view.row_of("convnet/flat") is None


def test_figure_data_lives_in_widget_state_and_clicks_select_in_the_explorer(conv_bn):
    dashboard = hw.explore(conv_bn)
    figure = dashboard.weights.figure
    [heatmap] = state_data(figure)  # in the state a saved notebook or Voila reads
    assert heatmap["type"] == "heatmap"
    assert list(heatmap["y"]) == ["conv", "bn", "&lt;b&gt;head"]  # plotly markup escaped
    dashboard.explorer.handle_action({"action": "select", "path": "convnet/conv"})
    assert [t["type"] for t in state_data(figure)] == ["heatmap", "bar", "bar"]
    assert "convnet/conv: 2 variable(s)" in state_layout(figure)["title"]["text"]
    assert state_layout(figure)["shapes"][0]["y0"] == -0.5  # the selected row is framed

    class Click:  # what plotly's front end reports for a click on the third row
        ys = ["&lt;b&gt;head"]

    dashboard.weights._on_overview_click(None, Click, None)
    assert dashboard.explorer.selected == "convnet/<b>head"
    assert state_layout(figure)["shapes"][0]["y0"] == 1.5


def test_the_theme_is_the_views_own_not_the_kernels(conv_bn):
    """Each view styles its plot from its own page's theme (figure.js): nothing in the
    kernel holds a theme that two views in different themes would overwrite."""
    dashboard = hw.explore(conv_bn)
    widgets = [dashboard, *_descendants(dashboard)]
    assert [w for w in widgets if "theme" in w.trait_names()] == []
    assert "template" not in state_layout(dashboard.weights.figure)
    dashboard.close()


def _descendants(widget):
    for child in getattr(widget, "children", ()):
        yield child
        yield from _descendants(child)


def _selection_bytes(model, path: str) -> tuple[int, int]:
    """(bytes of the whole figure, bytes a selection of ``path`` sends), once the overview
    is complete."""
    from bench.bytes_bench import figure_payload
    from recording_comm import recording_comms

    with recording_comms() as recorder:
        plot = hw.WeightPlot(model)
        assert plot.wait(timeout=120)
        whole = figure_payload(plot.figure)
        recorder.clear()
        plot.selected = path
        assert plot.selection_traces  # the selection is drawn
        sent = recorder.bytes_sent()
    plot.close()
    return whole, sent


def test_a_selection_sends_its_histogram_not_the_overview_again(keras):
    """On a model of 400 layers a selection sends what it changes (its bars, title and the
    frame on its row), as much as on a model of 20; before, the whole figure went again."""
    from bench.models import many_layers

    small_figure, small = _selection_bytes(many_layers(20), "layers_20/dense_3")
    big_figure, big = _selection_bytes(many_layers(400), "layers_400/dense_3")
    assert big_figure > 5 * small_figure  # the overview is most of the figure
    assert big <= 1.2 * small, (small, big)
    assert big * 10 < big_figure, (big, big_figure)


def test_overview_of_many_layers_stays_small(keras):
    from bench.bytes_bench import figure_payload
    from bench.models import many_layers

    model = many_layers(300)
    plot = hw.explore(model).weights
    assert len(plot.overview.names) == 300
    assert plot.figure.layout.height < 1000  # a window of rows, panned, not 300 rows tall
    # ~3 bytes a cell (JSON digits), the names, and the layout
    assert figure_payload(plot.figure) < 300 * ov.OVERVIEW_BINS * 3.5 + 300 * 14 + 5_000


# -- Layers that share a name --------------------------------------------------------------
@pytest.mark.parametrize("generation", GENERATIONS)
def test_overview_shows_each_repeated_layer_once(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = repeated_names_model(K, tf)
    plot = hw.WeightPlot(model)
    [heatmap] = [t for t in plot.overview_figure.data if t.type == "heatmap"]
    assert list(heatmap.y) == ["hidden", "hidden[1]", "hidden[2]"]
    # each row is its own layer's kernel
    root = plot.tree.root.path
    assert plot.overview.paths == [f"{root}/{name}" for name in ("hidden", "hidden[1]", "hidden[2]")]
    assert plot.overview.tensors == ["kernel"] * 3
