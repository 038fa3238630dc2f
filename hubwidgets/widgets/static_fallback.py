"""The static copy of a dashboard, for every renderer that cannot run its widget.

A notebook output holds one mimebundle, and each renderer shows one type of it: JupyterLab
the widget, nbconvert the widget too when the notebook has widget state (then nothing at all
offline or without JavaScript), GitHub and nbviewer ``text/html``, a terminal ``text/plain``.
So the dashboard publishes two outputs: first the static view (``text/html`` only, its block
marked with a token), then the widget.  Where the widget renders, :class:`StaticFallback`
(a hidden part of the dashboard, kept in the widget state with the token) hides the static
copy by a style rule; wherever it does not, the static copy is what shows.  In a live
JupyterLab, Notebook 7 or Voilà page the static copy also waits, hidden, for a few seconds
(a CSS animation on outputs of a live application only), so that the live view replaces it
without a flash.  See ``docs/static-rendering.md``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .keywords import KnownKeywords

STATIC = Path(__file__).parent / "static"
WAIT_S = 4  # how long a live page keeps the static copy hidden while the widget loads

# Only inside a live Lumino application (JupyterLab, Notebook 7, Voilà): nbconvert's pages,
# GitHub and nbviewer have no .lm-Widget output areas, so the copy shows at once there.
LIVE_WAIT = (".lm-Widget.jp-OutputArea-output .hw-static{animation:hw-s-wait %ds step-end both}"
             "@keyframes hw-s-wait{from{visibility:hidden;max-height:0;overflow:hidden}"
             "to{visibility:visible}}" % WAIT_S)


class StaticFallback(KnownKeywords, anywidget.AnyWidget):
    """Hides the static copy whose block carries ``token`` wherever this view renders."""

    _esm = STATIC / "static_fallback.js"
    token = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(token=uuid.uuid4().hex[:16], layout={"display": "none"}, **kwargs)


def html_front_end() -> bool:
    """Whether the running IPython shows HTML (a kernel), not only text (a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets needs IPython
        return False
    shell = get_ipython()
    formatter = getattr(shell, "display_formatter", None)
    return formatter is not None and "text/html" in formatter.active_types


def publish_static(html_fragment: str, token: str, update: bool = False) -> None:
    """Show the static copy as its own output (``text/html`` only), before the widget; with
    ``update``, replace the copy shown before (its display id is the token): a large model's
    statistics come in after the first display (``Dashboard.wait()``)."""
    from IPython.display import publish_display_data

    publish_display_data({"text/html": html_fragment},
                         metadata={"hubwidgets": {"static_of": token}},
                         transient={"display_id": token}, update=update)
