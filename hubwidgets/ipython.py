"""``%load_ext hubwidgets``: Keras models, layers and Hub modules display as the explorer.

The dashboard also publishes its static view (for nbconvert, GitHub, nbviewer, a notebook
reopened without a kernel) and carries a plain-text summary (for a terminal IPython).
"""

from __future__ import annotations

from typing import Any

_FORMATTED: list[type] = []


def _model_types() -> list[type]:
    import sys

    types: list[type] = []
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "Layer"):
        types.append(keras.Layer)
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None:
        types.append(tf_keras.layers.Layer)
    if "tensorflow" in sys.modules:
        from .model.tf_compat import autotrackable_class

        types.append(autotrackable_class())
    return types


def _display_model(obj: Any, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
    from .widgets.dashboard import explore

    try:
        dashboard = explore(obj)
    except Exception:  # noqa: BLE001 - fall back to IPython's own display
        return None
    return dashboard._repr_mimebundle_(include=include, exclude=exclude)


def load_ipython_extension(ipython: Any) -> None:
    """Register the explorer as the rich display of models (imports TensorFlow now)."""
    import tensorflow  # noqa: F401 - the model types live there

    formatter = ipython.display_formatter.mimebundle_formatter
    for cls in _model_types():
        formatter.for_type(cls, _display_model)
        _FORMATTED.append(cls)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove what :func:`load_ipython_extension` registered."""
    formatter = ipython.display_formatter.mimebundle_formatter
    while _FORMATTED:
        formatter.type_printers.pop(_FORMATTED.pop(), None)
