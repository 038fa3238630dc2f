"""``explore(model)``: the explorer, the weight plots and the model's totals in one panel."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..model.inspect import inspect
from ..model.summary import format_bytes
from ..model.tree import ModelTree
from .explorer import LayerExplorer
from .weights import WeightPlot


def header_html(tree: ModelTree) -> str:
    """The totals line: params, trainable, bytes and devices (names escaped)."""
    root = tree.root
    devices = sorted({v.device.replace("/job:localhost/replica:0/task:0/", "")
                      for v in tree.variables() if v.device})
    return (f"<b>{html.escape(root.name)}</b> ({html.escape(root.class_name)}, "
            f"{html.escape(tree.framework)}) · {root.params:,} params · "
            f"{root.trainable_params:,} trainable · {format_bytes(root.nbytes)} · "
            f"on {html.escape(', '.join(devices) or 'no device')}")


class Dashboard(widgets.VBox):
    """The three panels together; ``refresh()`` re-reads the model after its weights change."""

    def __init__(self, model: Any, *, var_name: str = "model", bins: int = 64) -> None:
        self.tree = inspect(model)
        self.explorer = LayerExplorer(self.tree, var_name=var_name)
        self.weights = WeightPlot(self.tree, bins=bins)
        self.explorer.mark_nonfinite(self.weights.nonfinite)  # from the overview's statistics
        self.header = widgets.HTML(header_html(self.tree))
        refresh = widgets.Button(description="Refresh", icon="refresh",
                                 tooltip="Re-read the weights (after training or set_weights)")
        refresh.on_click(lambda _b: self.refresh())
        widgets.link((self.explorer, "selected"), (self.weights, "selected"))  # overview clicks too
        self.explorer.observe(lambda _c: self._update_header(), "totals")
        self.explorer.add_class("hw-in-dashboard")  # the header is its one totals line
        self.header.add_class("hw-header")
        self.explorer.layout.flex = "1 1 560px"  # beside the plots when the output area is
        self.weights.layout.flex = "0 0 480px"   # >= ~1100 px wide, above them below that
        self.explorer.layout.min_width = "0"
        super().__init__([widgets.HBox([self.header, refresh], layout={"align_items": "center"}),
                          widgets.HBox([self.explorer, self.weights],
                                       layout={"flex_flow": "row wrap", "align_items": "flex-start",
                                               "grid_gap": "8px 16px"})])

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, plus a text and HTML summary for where widgets cannot render."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        summary = self.tree.summary()
        bundle["text/plain"] = summary
        bundle.setdefault("text/html", f"<pre>{html.escape(summary)}</pre>")
        return bundle

    def _update_header(self) -> None:
        self.header.value = header_html(self.tree)

    def refresh(self) -> None:
        """Re-read trainable flags and weights from the live model."""
        self.weights.refresh()
        self.explorer.mark_nonfinite(self.weights.nonfinite)
        self._update_header()


def explore(model: Any, *, var_name: str = "model", bins: int = 64) -> Dashboard:
    """Show ``model`` (anything :func:`hubwidgets.inspect` accepts) as an interactive dashboard.

    ``var_name`` is the variable name used in the generated Python code.
    """
    return Dashboard(model, var_name=var_name, bins=bins)
