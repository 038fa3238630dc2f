"""The static view of a model: its tree (collapsible without JavaScript), its weight overview
and its largest layer's histogram, as one HTML fragment or a standalone page.

Used by :func:`hubwidgets.to_html` / :func:`hubwidgets.save_html` (slides, course pages), and
by the dashboard, which puts it in the notebook beside the live widget for every renderer
that cannot run the widget (see ``docs/static-rendering.md``).  Imports no widget library.
"""

from __future__ import annotations

import html
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model.errors import HubWidgetsError
from .svg import histogram_svg, overview_svg
from .tree_html import STYLE, tree_html

if TYPE_CHECKING:
    from ..model.stats import WeightStats
    from ..model.tree import ModelTree, Node

# The standalone page: the page's colours follow the reader's light or dark preference.
PAGE_STYLE = """:root{color-scheme:light dark}
body{margin:16px;background:#ffffff;color:#1f1f1f}
@media (prefers-color-scheme: dark){body{background:#121212;color:#ececec}}"""


def largest_layer(tree: "ModelTree") -> "Node | None":
    """The layer holding the most parameters itself (ties: the first in model order)."""
    best = None
    for node in tree:
        if node.variables and (best is None or node.own_params > best.own_params):
            best = node
    return best


def pictures_html(tree: "ModelTree", stats: dict[str, "WeightStats"]) -> str:
    """The overview heatmap and the largest layer's histogram, as inline SVG figures."""
    from ..widgets.overview import OVERVIEW_BINS, build_overview, representative_variable

    parts: list[str] = []
    overview = build_overview(tree, stats, bins=OVERVIEW_BINS)
    if overview.names:
        parts.append(f'<figure class="hw-s-figure">{overview_svg(overview)}</figure>')
    layer = largest_layer(tree)
    var = representative_variable(layer) if layer is not None else None
    if var is not None and var.path in stats:
        name = "/".join(layer.path.split("/")[-2:])
        name = name if len(name) <= 36 else "\u2026" + name[-35:]
        title = f"Largest layer: {name} ({var.name}, {var.size:,} values)"
        parts.append(f'<figure class="hw-s-figure">{histogram_svg(stats[var.path], title)}'
                     "</figure>")
    return "".join(parts)


def static_view(tree: "ModelTree", stats: dict[str, "WeightStats"] | None = None, *,
                token: str = "", extra_style: str = "") -> str:
    """The static view as an HTML fragment (``<div class="hw-static">`` with its scoped
    style): the totals, the tree, and (when ``stats`` are given) the pictures.  ``token``
    names this copy, so that a live view of the same output can hide it; ``extra_style`` is
    added to its style."""
    extra = f" hw-static-{html.escape(token)}" if token else ""
    pictures = pictures_html(tree, stats) if stats else ""
    return (f'<div class="hw-static{extra}"><style>{STYLE}{extra_style}</style>{tree_html(tree)}'
            f'<div class="hw-s-pictures">{pictures}</div></div>')


def tree_and_stats(model: Any, bins: int = 64) -> tuple["ModelTree", dict[str, "WeightStats"]]:
    """The model's tree and the statistics of all its variables (NaN/Inf not warned: the
    static view draws them)."""
    from ..model.inspect import inspect
    from ..model.stats import NonFiniteWeightsWarning, weight_stats

    tree = inspect(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWeightsWarning)  # drawn, and in the tree
        stats = weight_stats(tree, bins=bins)
    return tree, stats


def to_html(model: Any, *, bins: int = 64) -> str:
    """The static view of ``model`` (anything :func:`hubwidgets.inspect` accepts) as an HTML
    fragment: the layer tree as nested ``<details>`` (no JavaScript), the totals, the weight
    overview and the largest layer's histogram as inline SVG.  Names are escaped text."""
    tree, stats = tree_and_stats(model, bins)
    return static_view(tree, stats)


def page_html(fragment: str, title: str) -> str:
    """``fragment`` in a standalone page that follows the reader's light or dark setting."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"color-scheme\" content=\"light dark\">"
            f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head>"
            f"<body>{fragment}</body></html>\n")


def save_html(model: Any, path: str | os.PathLike, *, bins: int = 64) -> Path:
    """Write the static view of ``model`` as a standalone page to ``path`` (whole or not at
    all: a temporary file in the same folder is renamed); returns the path."""
    if not isinstance(path, (str, os.PathLike)):
        raise HubWidgetsError(f"save_html needs a file path (str or pathlib.Path), not "
                              f"{type(path).__name__}: e.g. save_html(model, 'model.html')")
    target = Path(path)
    if target.is_dir():
        raise HubWidgetsError(f"{target} is a folder: give a file name, e.g. {target / 'model.html'}")
    if not target.parent.is_dir():
        raise HubWidgetsError(f"the folder {target.parent} does not exist: create it first")
    tree, stats = tree_and_stats(model, bins)
    page = page_html(static_view(tree, stats), f"{tree.root.name}: hubwidgets")
    fd, tmp = tempfile.mkstemp(prefix=".hw-", suffix=".html", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise HubWidgetsError(f"could not write {target}: {err}") from err
    return target
