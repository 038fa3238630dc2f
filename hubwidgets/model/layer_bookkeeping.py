"""What hubwidgets remembers about single Keras layers of a model, kept by the model's
:class:`~hubwidgets.model.session.ModelSession` (never written onto the layers)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class LayerNotes:
    """hubwidgets' record of one layer."""

    weight_order: dict[int, int] | None = None
    """tf_keras: the position of each weight (by ``id``) in the layer's first order
    (trainable + non-trainable), so part freezes keep the order it saves in."""
    lora_base_trains: bool = False
    """The user unfroze this LoRA layer's base kernel by naming it."""
    flags_before_freeze: Any = None
    """Keras 3 trainable flags below a scope with LoRA adapters, kept when it was frozen
    whole (:func:`hubwidgets.model.lora.remember_before_freeze`)."""


class LayerBook:
    """:class:`LayerNotes` by layer identity; a layer that is gone takes its notes with it."""

    def __init__(self) -> None:
        self._notes: dict[int, tuple[Callable[[], Any], LayerNotes]] = {}

    def get(self, layer: Any) -> LayerNotes | None:
        """The notes on ``layer``, or None (never creates them)."""
        entry = self._notes.get(id(layer))
        if entry is None or entry[0]() is not layer:
            return None
        return entry[1]

    def of(self, layer: Any) -> LayerNotes:
        """The notes on ``layer``, created empty on first use."""
        notes = self.get(layer)
        if notes is None:
            notes = LayerNotes()
            key = id(layer)
            try:
                ref: Callable[[], Any] = weakref.ref(layer, lambda _: self._notes.pop(key, None))
            except TypeError:  # not weakly referable: held for the session's life
                ref = lambda: layer  # noqa: E731
            self._notes[key] = (ref, notes)
        return notes

    def __len__(self) -> int:
        return sum(1 for ref, _ in self._notes.values() if ref() is not None)
