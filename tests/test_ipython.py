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


def test_dashboard_has_static_fallback(k3_sequential):
    import hubwidgets as hw

    bundle = hw.explore(k3_sequential)._repr_mimebundle_()
    assert "dense_layer_1" in bundle["text/html"] and bundle["text/html"].startswith("<pre>")
