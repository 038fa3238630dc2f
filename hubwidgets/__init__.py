"""hubwidgets: look inside a TensorFlow model from a notebook, and act on it.

``import hubwidgets`` is cheap: TensorFlow, Keras and the widget libraries load on first use.

Backend (no widgets): :func:`inspect`, :func:`weight_stats`, :func:`freeze`,
:func:`unfreeze`, :func:`set_trainable`, :func:`search`, :class:`HubLayer`, and
:class:`ModelSession` (:func:`session_for`), the live state every view observes.
Widgets: :func:`explore`, :class:`LayerExplorer`, :class:`WeightPlot`.
Errors and warnings (all in ``hubwidgets.model.errors``): :class:`HubWidgetsError` and
:class:`HubWidgetsWarning` are the bases of every one.
In IPython: ``%load_ext hubwidgets``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "inspect": "hubwidgets.model.inspect",
    "ModelTree": "hubwidgets.model.tree",
    "Node": "hubwidgets.model.tree",
    "VariableInfo": "hubwidgets.model.tree",
    "SignatureInfo": "hubwidgets.model.tree",
    "weight_stats": "hubwidgets.model.stats",
    "effective_weights": "hubwidgets.model.effective",
    "enable_lora": "hubwidgets.model.lora_enable",
    "WeightStats": "hubwidgets.model.stats",
    "freeze": "hubwidgets.model.freeze",
    "unfreeze": "hubwidgets.model.freeze",
    "set_trainable": "hubwidgets.model.freeze",
    "freeze_up_to": "hubwidgets.model.freeze",
    "needs_compile": "hubwidgets.model.compile_state",
    "search": "hubwidgets.model.matching",
    "ModelSession": "hubwidgets.model.session",
    "session_for": "hubwidgets.model.session",
    "HubLayer": "hubwidgets.model.hub_layer",
    "snapshot": "hubwidgets.model.snapshot",
    "Snapshot": "hubwidgets.model.snapshot",
    "diff": "hubwidgets.model.diff",
    "WeightDiff": "hubwidgets.model.diff",
    "VariableDiff": "hubwidgets.model.diff",
    "watch": "hubwidgets.widgets.training",
    "TrainingPanel": "hubwidgets.widgets.training",
    "training_panel_for": "hubwidgets.widgets.training",
    "scale_weights": "hubwidgets.model.edits",
    "reset_weights": "hubwidgets.model.edits",
    "prune_weights": "hubwidgets.model.edits",
    "add_noise": "hubwidgets.model.edits",
    "restore": "hubwidgets.model.snapshot",
    "undo": "hubwidgets.model.edits",
    "redo": "hubwidgets.model.edits",
    "undo_history": "hubwidgets.model.edits",
    "EditSpec": "hubwidgets.model.edit_specs",
    "FineTunedMeaning": "hubwidgets.model.edit_specs",
    "EditField": "hubwidgets.model.edit_specs",
    "register_edit": "hubwidgets.model.edit_specs",
    "edit_code": "hubwidgets.model.codegen",
    "probe": "hubwidgets.model.probe",
    "Probe": "hubwidgets.model.probe",
    "ActivationStats": "hubwidgets.model.probe",
    "to_html": "hubwidgets.render.static_html",
    "save_html": "hubwidgets.render.static_html",
    "explore": "hubwidgets.widgets.dashboard",
    "Dashboard": "hubwidgets.widgets.dashboard",
    "LayerExplorer": "hubwidgets.widgets.explorer",
    "WeightPlot": "hubwidgets.widgets.weights",
    "ActivationsPanel": "hubwidgets.widgets.activations",
    "load_ipython_extension": "hubwidgets.ipython",
    "unload_ipython_extension": "hubwidgets.ipython",
    "HubWidgetsError": "hubwidgets.model.errors",
    "ArgumentError": "hubwidgets.model.errors",
    "UnbuiltModelError": "hubwidgets.model.errors",
    "NotAModelError": "hubwidgets.model.errors",
    "ModelLoadError": "hubwidgets.model.errors",
    "FreezeError": "hubwidgets.model.errors",
    "EditError": "hubwidgets.model.errors",
    "SearchTooSlowError": "hubwidgets.model.errors",
    "InsufficientMemoryError": "hubwidgets.model.errors",
    "ProbeError": "hubwidgets.model.errors",
    "MessageError": "hubwidgets.model.errors",
    "ModelGoneError": "hubwidgets.model.errors",
    "UnknownKeywordError": "hubwidgets.model.errors",
    "HubWidgetsWarning": "hubwidgets.model.errors",
    "NonFiniteWeightsWarning": "hubwidgets.model.errors",
    "ReplicaDriftWarning": "hubwidgets.model.errors",
    "UndoHistoryWarning": "hubwidgets.model.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; tests/test_architecture.py
    # checks that it names every entry of _EXPORTS, from the same module
    from .model.codegen import edit_code
    from .model.compile_state import needs_compile
    from .model.diff import VariableDiff, WeightDiff, diff
    from .model.edit_specs import EditField, EditSpec, FineTunedMeaning, register_edit
    from .model.edits import (add_noise, prune_weights, redo, reset_weights,
                              scale_weights, undo, undo_history)
    from .model.effective import effective_weights
    from .model.errors import (ArgumentError, EditError, FreezeError, HubWidgetsError, HubWidgetsWarning,
                               InsufficientMemoryError, MessageError, ModelGoneError,
                               ModelLoadError, NonFiniteWeightsWarning, NotAModelError,
                               ProbeError, ReplicaDriftWarning, SearchTooSlowError,
                               UnbuiltModelError, UndoHistoryWarning, UnknownKeywordError)
    from .model.freeze import freeze, freeze_up_to, set_trainable, unfreeze
    from .model.hub_layer import HubLayer
    from .model.inspect import inspect
    from .model.lora_enable import enable_lora
    from .model.matching import search
    from .model.probe import ActivationStats, Probe, probe
    from .model.session import ModelSession, session_for
    from .model.snapshot import Snapshot, restore, snapshot
    from .model.stats import WeightStats, weight_stats
    from .model.tree import ModelTree, Node, SignatureInfo, VariableInfo
    from .render.static_html import save_html, to_html
    from .widgets.activations import ActivationsPanel
    from .widgets.dashboard import Dashboard, explore
    from .widgets.explorer import LayerExplorer
    from .widgets.training import TrainingPanel, training_panel_for, watch
    from .widgets.weights import WeightPlot


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        return _registered_edit(name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def _registered_edit(name: str) -> Any:
    """``hubwidgets.<edit>`` for an edit registered in the edit table at run time (the
    built-in ones are in ``_EXPORTS``); not kept, so a replaced or removed entry is followed."""
    if not name.startswith("_"):
        from .model.edit_specs import EDITS  # numpy only: no TensorFlow

        if name in EDITS:
            from .model.edits import edit_function

            return edit_function(name)
    raise AttributeError(f"module 'hubwidgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext hubwidgets``: show models as the explorer."""
    from .ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext hubwidgets``: restore the normal display."""
    from .ipython import unload_ipython_extension as unload

    unload(ipython)
