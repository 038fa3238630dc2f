"""Read a StatefulFigure's widget state as a saved notebook or Voilà reads it: plotly JSON whose
numpy arrays are base64 typed arrays (``{"dtype", "bdata", "shape"}``)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def decoded(value: Any) -> Any:
    """``value`` with every typed array as a numpy array."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            array = array.reshape([int(n) for n in str(shape).split(",")])
        return array
    if isinstance(value, dict):
        return {k: decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def state_figure(figure: Any) -> dict[str, Any]:
    """The figure a view draws from the widget state (its base with its patch applied)."""
    from hubwidgets.widgets.figure import drawn_figure

    state = figure.get_state()
    return drawn_figure(state["figure"], state["patch"])


def state_data(figure: Any) -> list[dict[str, Any]]:
    """The traces in the figure's widget state."""
    return decoded(state_figure(figure)["data"])


def state_layout(figure: Any) -> dict[str, Any]:
    """The layout in the figure's widget state."""
    return decoded(state_figure(figure)["layout"])
