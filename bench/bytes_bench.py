"""Bytes from kernel to browser for ``explore(ResNet50)``: the first display, then each
selection change; and how many widgets a dashboard makes for a tiny and a large model.
``python -m bench.bytes_bench``
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import emit
from .models import many_layers, resnet50


SIZES: list[int] = []  # every message any widget sends, in bytes


class RecordingComm:
    """Stands in for the kernel-to-browser channel and records every message's size."""

    kernel = object()
    count = 0

    def __init__(self, *args, **kwargs):
        RecordingComm.count += 1
        self.comm_id = f"recording-{RecordingComm.count}"
        self.sizes = SIZES

    def open(self, *args, **kwargs):
        pass

    def send(self, data=None, metadata=None, buffers=None):
        self.sizes.append(len(json.dumps(data or {}, default=str))
                          + sum(len(memoryview(b)) for b in buffers or ()))

    def close(self, *args, **kwargs):
        pass

    def on_msg(self, *args, **kwargs):
        pass

    def on_close(self, *args, **kwargs):
        pass


def main() -> None:
    from ipywidgets import widget as widget_module

    import hubwidgets as hw
    from hubwidgets.widgets import explorer as explorer_module

    comm = RecordingComm()
    widget_module.comm = type("C", (), {"create_comm": staticmethod(RecordingComm)})
    bundle = sum(len(p.read_bytes()) for p in (
        Path(explorer_module.__file__).parent / "static").iterdir())

    def widgets_made(model) -> int:
        before = len(widget_module.Widget.widgets)
        hw.explore(model)
        return len(widget_module.Widget.widgets) - before

    model = resnet50()
    comm.sizes.clear()
    dashboard = hw.explore(model)
    first = sum(comm.sizes)
    changes = []
    for path in ("resnet50/conv2_block1_1_conv", "resnet50/conv5_block3_3_conv",
                 "resnet50/predictions/kernel"):
        comm.sizes.clear()
        dashboard.explorer.handle_action({"action": "select", "path": path})
        changes.append(sum(comm.sizes))
    emit({"first_display_bytes": first, "explorer_bundle_bytes": bundle,
          "selection_change_bytes_max": max(changes),
          "widgets_tiny_model": widgets_made(many_layers(3)),
          "widgets_resnet50": widgets_made(model)})


if __name__ == "__main__":
    main()
