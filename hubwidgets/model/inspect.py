"""``hubwidgets.inspect``: any TensorFlow model (or a path to one) as a :class:`ModelTree`."""

from __future__ import annotations

import os
from typing import Any

from .build import SUPPORTED, build_tree
from .session import existing_session, session_for
from .tree import ModelTree


def inspect(obj: Any) -> ModelTree:
    """Describe ``obj`` as a tree of layers and variables with parameter counts.

    ``obj`` may be {supported}.  Nothing about the model is changed.  A live model's tree is
    kept by its :class:`~hubwidgets.model.session.ModelSession` and walked again only when
    the model's structure changed.
    """
    if isinstance(obj, ModelTree):
        session = existing_session(obj.obj)
        if session is not None and session.tree is obj:
            return session.update()  # walked again if the model's layers changed
        return obj.refresh()
    if isinstance(obj, (str, os.PathLike)):
        return build_tree(obj)
    return session_for(obj).tree  # brought up to date by session_for


inspect.__doc__ = (inspect.__doc__ or "").format(supported=SUPPORTED)
