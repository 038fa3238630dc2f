"""``explore(model)``: the explorer, the weight plots and the model's totals in one panel.

The dashboard only lays views out: each view observes the model's session, so the header,
the explorer and the plots follow every change (a toggle, ``hw.freeze``, a refresh, layers
added or removed).
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..model.formatting import format_bytes
from ..model.session import ModelSession, session_for
from ..model.tree import ModelTree
from ..render.static_html import static_view
from .explorer import LayerExplorer
from .keywords import KnownKeywords
from .session_view import GONE, SessionHandle, SessionView
from .static_fallback import LIVE_WAIT, StaticFallback, html_front_end, publish_static
from .training import training_panel_for
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


class ModelHeader(KnownKeywords, SessionView, widgets.HTML):
    """The model's totals line, kept up to date from its session."""

    def __init__(self, session: ModelSession) -> None:
        super().__init__(header_html(session.tree))
        self._follow(session)

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what != "selection":
            self.value = header_html(session.tree)


class Dashboard(KnownKeywords, SessionHandle, widgets.VBox):
    """The views of one model together; ``refresh()`` re-reads the model after its weights
    or layers changed.

    It holds its model while the browser shows it (or before it was ever shown); once
    closed, or once every view of it was cleared (a re-run cell), it holds it weakly, so
    deleting the model frees its memory, and a view shown again says the model is gone.
    """

    def __init__(self, model: Any, *, var_name: str | None = None, bins: int = 64,
                 probe: Any = None, **kwargs: Any) -> None:
        self.session = session_for(model, var_name)
        self.activations: widgets.Widget | None = None
        if probe is not None:  # a Probe, a batch x, or (x, y): probed before any view exists
            from .activations import ActivationsPanel

            self.activations = ActivationsPanel(self.session, probe)
        # the tree at once; the statistics fill in on a thread (the explorer badges NaN from
        # them as they come), so the kernel is free for the next cell
        self.explorer = LayerExplorer(self.session, scan_weights=True)
        self.explorer.on_views_changed = self._on_views_changed
        self.weights = WeightPlot(self.session, bins=bins,
                                  on_statistics=self.explorer.statistics_changed)
        self.header = ModelHeader(self.session)
        refresh = widgets.Button(description="Refresh", icon="refresh",
                                 tooltip="Re-read the model (after training, set_weights, "
                                         "or adding layers)")
        refresh.on_click(lambda _b: self.refresh())
        self.explorer.add_class("hw-in-dashboard")  # the header is its one totals line
        self.header.add_class("hw-header")
        self.explorer.layout.flex = "1 1 560px"  # beside the plots when the output area is
        self.weights.layout.flex = "0 0 480px"   # >= ~1100 px wide, above them below that
        self.explorer.layout.min_width = "0"
        self.model_view = widgets.VBox([
            widgets.HBox([self.header, refresh], layout={"align_items": "center"}),
            widgets.HBox([self.explorer, self.weights],
                         layout={"flex_flow": "row wrap", "align_items": "flex-start",
                                 "grid_gap": "8px 16px"})])
        self.training: widgets.Widget | None = None
        super().__init__([self.model_view], **kwargs)
        self._show_tabs()
        self._show_training_tab()
        self._stop_tab_check = self.session.observe(self._on_session_change)

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what in ("values", "structure"):  # e.g. the end of a watched fit
            self._show_training_tab()

    def _show_training_tab(self) -> None:
        """A watched model (``hubwidgets.watch``) gets a "Training" tab with its live panel."""
        panel = training_panel_for(self.session)
        if panel is None or panel is self.training:
            return
        self.training = panel
        self._show_tabs()

    def _show_tabs(self) -> None:
        """"Model", then "Activations" (``probe=``) and "Training" (a watched model) when
        there are any."""
        pages = [("Model", self.model_view), ("Activations", self.activations),
                 ("Training", self.training)]
        pages = [(title, view) for title, view in pages if view is not None]
        if len(pages) == 1:
            return
        tabs = widgets.Tab(children=[view for _title, view in pages])
        for i, (title, _view) in enumerate(pages):
            tabs.set_title(i, title)
        self.children = [tabs]

    @property
    def tree(self) -> ModelTree:
        """The model's tree, as the session holds it now."""
        return self.session.tree

    _static_complete = False

    def _on_views_changed(self, shown: int) -> None:
        views = [self, self.explorer, self.weights, self.header]
        views += [self.activations] if isinstance(self.activations, SessionHandle) else []
        if shown == 0:
            for view in views:
                view.release()
        elif not all([view.hold() for view in views]):
            self.explorer.message = GONE

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the statistics computed in the background are all done and drawn
        (for scripts, tests and ``nbconvert``); False when ``timeout`` seconds passed first.
        """
        done = self.weights.wait(timeout)
        if done:
            self.explorer.statistics_changed()
            fallback = getattr(self, "static_fallback", None)
            if fallback is not None and not self._static_complete:  # now with every figure
                publish_static(self.static_html(fallback.token), fallback.token, update=True)
                self._static_complete = True
        return done

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, and for every renderer that cannot show it a static copy, published
        just before it as its own output (hidden wherever the widget renders: see
        :mod:`hubwidgets.widgets.static_fallback`), and a text summary for a terminal."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.tree.summary()
        if html_front_end():
            fallback = getattr(self, "static_fallback", None)
            if fallback is None:  # a hidden part of the model view, kept in widget state
                self.static_fallback = fallback = StaticFallback()
                self.model_view.children = (*self.model_view.children, fallback)
                # the copy follows the model, so a notebook saved later shows it as it is
                self._stop_static = self.session.observe(self._update_static_copy)
            publish_static(self.static_html(fallback.token), fallback.token)
            self._static_complete = not self.weights.statistics_pending()
            bundle["text/html"] = ""  # the static copy just above stands for the widget
        return bundle

    def static_html(self, token: str = "") -> str:
        """The static view of the model as the dashboard shows it now (the statistics its
        plots computed, when they are still current)."""
        stats = self.weights.statistics_store().known(self.tree.variables())
        return static_view(self.tree, stats, token=token, extra_style=LIVE_WAIT)

    def _update_static_copy(self, session: ModelSession, what: str) -> None:
        """A freeze, an edit or new layers: every shown static copy is drawn again (the
        pictures from the statistics known now)."""
        fallback = getattr(self, "static_fallback", None)
        if what == "selection" or fallback is None or not html_front_end():
            return
        publish_static(self.static_html(fallback.token), fallback.token, update=True)

    def refresh(self) -> None:
        """Re-read the live model (weights, flags, and its layers if they changed)."""
        self.session.update("values")

    def close(self) -> None:
        """Close every view of the dashboard (they stop following the session)."""
        for name in ("explorer", "weights", "header", "activations", "training",
                     "static_fallback"):
            view = getattr(self, name, None)  # None when construction failed part way
            if view is not None:
                view.close()
        work = getattr(getattr(self, "weights", None), "statistics_work", None)
        if work is not None:
            work.stop()
        for name in ("_stop_tab_check", "_stop_static"):
            stop = getattr(self, name, None)
            if stop is not None:
                stop()
        self.release()
        super().close()


def explore(model: Any, *, var_name: str | None = None, bins: int = 64,
            probe: Any = None, **kwargs: Any) -> Dashboard:
    """Show ``model`` (anything :func:`hubwidgets.inspect` accepts) as an interactive dashboard.

    ``var_name`` is the variable name used in the generated Python code (default "model").
    ``probe``: a batch ``x``, ``(x, y)`` or a :class:`~hubwidgets.model.probe.Probe` adds an
    "Activations" tab (:class:`~hubwidgets.widgets.activations.ActivationsPanel`).
    Other keyword arguments are the dashboard's widget traits (``layout``); an unknown one is
    refused (:class:`~hubwidgets.model.errors.UnknownKeywordError`) before the model is read.
    """
    return Dashboard(model, var_name=var_name, bins=bins, probe=probe, **kwargs)
