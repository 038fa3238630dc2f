"""Bytes from kernel to browser for ``explore(ResNet50)``: the first display, then each
selection change; and how many widgets a dashboard makes for a tiny and a large model.
``python -m bench.bytes_bench``
"""

from __future__ import annotations

from pathlib import Path

from .common import emit
from .models import many_layers, resnet50
from tests.recording_comm import recording_comms


def main() -> None:
    from ipywidgets import widget as widget_module

    import hubwidgets as hw
    from hubwidgets.widgets import explorer as explorer_module

    with recording_comms() as recorder:
        measure(hw, widget_module, explorer_module, recorder)


def measure(hw, widget_module, explorer_module, recorder) -> None:
    bundle = sum(len(p.read_bytes()) for p in (
        Path(explorer_module.__file__).parent / "static").iterdir())

    def widgets_made(model) -> int:
        before = len(widget_module.Widget.widgets)
        hw.explore(model)
        return len(widget_module.Widget.widgets) - before

    model = resnet50()
    recorder.clear()
    dashboard = hw.explore(model)
    first = recorder.bytes_sent()
    changes = []
    for path in ("resnet50/conv2_block1_1_conv", "resnet50/conv5_block3_3_conv",
                 "resnet50/predictions/kernel"):
        recorder.clear()
        dashboard.explorer.handle_action({"action": "select", "path": path})
        changes.append(recorder.bytes_sent())
    emit({"first_display_bytes": first, "explorer_bundle_bytes": bundle,
          "selection_change_bytes_max": max(changes),
          "widgets_tiny_model": widgets_made(many_layers(3)),
          "widgets_resnet50": widgets_made(model)})


if __name__ == "__main__":
    main()
