"""%load_ext hubwidgets: a model that ends a cell displays as the dashboard, with a text fallback."""

from __future__ import annotations

import pytest

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance()


def test_load_and_unload_extension(shell, k3_sequential):
    formatter = shell.display_formatter
    assert WIDGET_MIME not in formatter.format(k3_sequential)[0]
    shell.run_line_magic("load_ext", "hubwidgets")
    try:
        bundle = formatter.format(k3_sequential)[0]
        assert WIDGET_MIME in bundle
        assert bundle["text/plain"].startswith('Model: "seed_sequential" (Sequential, Keras 3)')
        assert "&lt;" not in bundle["text/plain"]
    finally:
        shell.run_line_magic("unload_ext", "hubwidgets")
    assert WIDGET_MIME not in formatter.format(k3_sequential)[0]


def test_a_dashboard_publishes_its_static_copy_before_the_widget(shell, k3_sequential):
    """In a kernel: the static view as its own output, then the widget (whose own HTML is
    empty, so no renderer shows two copies); the static block carries the token of the
    dashboard's hidden StaticFallback, which is in the widget tree (and so in widget state)."""
    from IPython.utils.capture import capture_output

    import hubwidgets as hw

    dashboard = hw.explore(k3_sequential)
    with capture_output() as captured:
        bundle, _ = shell.display_formatter.format(dashboard)
    assert [list(o.data) for o in captured.outputs] == [["text/html"]]
    static = captured.outputs[0].data["text/html"]
    token = dashboard.static_fallback.token
    assert f'class="hw-static hw-static-{token}"' in static and "<details" in static
    assert "dense_layer_1" in static and "hw-s-overview" in static
    assert captured.outputs[0].metadata == {"hubwidgets": {"static_of": token}}
    assert bundle["text/html"] == "" and WIDGET_MIME in bundle
    assert bundle["text/plain"].startswith('Model: "seed_sequential"')
    assert dashboard.static_fallback in dashboard.model_view.children
    with capture_output() as again:  # displayed twice: one hidden part, the same token
        shell.display_formatter.format(dashboard)
    assert f"hw-static-{token}" in again.outputs[0].data["text/html"]
    assert list(dashboard.model_view.children).count(dashboard.static_fallback) == 1
    dashboard.close()


def test_a_text_front_end_gets_the_summary_only(shell, k3_sequential):
    """A terminal IPython shows text/plain only: nothing else is published."""
    from IPython.utils.capture import capture_output

    import hubwidgets as hw

    formatter = shell.display_formatter
    active = list(formatter.active_types)
    formatter.active_types = ["text/plain"]
    try:
        with capture_output() as captured:
            bundle, _ = formatter.format(hw.explore(k3_sequential))
    finally:
        formatter.active_types = active
    assert captured.outputs == []
    assert bundle["text/plain"].startswith('Model: "seed_sequential"')


def test_the_static_copy_follows_a_freeze(shell, k3_sequential):
    """A layer frozen after the cell ran: every shown copy is replaced (its display id), so
    a notebook saved later shows the frozen mark; a selection sends nothing."""
    from IPython.utils.capture import capture_output

    import hubwidgets as hw

    dashboard = hw.explore(k3_sequential)
    with capture_output() as shown:
        shell.display_formatter.format(dashboard)
    display_id = shown.outputs[0].transient["display_id"]
    layer = k3_sequential.get_layer("dense_layer_1")
    row = f'data-path="{hw.inspect(k3_sequential).find("dense_layer_1").path}"'
    assert 'hw-s-row hw-s-frozen" ' + row not in shown.outputs[0].data["text/html"]
    try:
        with capture_output() as updates:
            hw.freeze(k3_sequential, "dense_layer_1")
            dashboard.session.select(hw.inspect(k3_sequential).find("dense_layer_1").path)
        assert not layer.trainable
        # (other dashboards of this model, from earlier tests, update their own copies)
        mine = [o for o in updates.outputs if o.transient["display_id"] == display_id]
        assert [o.update for o in mine] == [True]
        assert 'class="hw-s-row hw-s-frozen" ' + row in mine[0].data["text/html"]
    finally:
        hw.unfreeze(k3_sequential, "dense_layer_1")
        dashboard.close()
    with capture_output() as after_close:
        hw.freeze(k3_sequential, "dense_layer_1")
        hw.unfreeze(k3_sequential, "dense_layer_1")
    assert not [o for o in after_close.outputs  # a closed dashboard stops following
                if o.transient["display_id"] == display_id]
