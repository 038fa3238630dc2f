"""Bytes from kernel to browser for ``explore(ResNet50)``: the first display (every widget's
opening state included, each JavaScript/CSS bundle counted once), the overview filling in
from the statistics computed in the background, then each selection change;
how many widgets a dashboard makes for a tiny and a large model; and the overview's payload
at 1,000 layers.  ``python -m bench.bytes_bench``
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .common import emit
from .models import many_layers, resnet50
from tests.recording_comm import CommRecorder, recording_comms


class OpeningRecorder(CommRecorder):
    """Also records each widget's opening message (its whole state), and the distinct
    JavaScript/CSS bundles in them, so a bundle sent twice counts once as a bundle and once
    as payload."""

    def __init__(self) -> None:
        super().__init__()
        self.bundles: dict[str, int] = {}  # sha1 -> bytes, the first copy of each bundle

    def comm(self, *args, **kwargs):
        data = kwargs.get("data") or {}
        buffers = kwargs.get("buffers") or ()
        size = len(json.dumps(data, default=str)) + sum(len(memoryview(b)) for b in buffers)
        for key in ("_esm", "_css", "plotly_js"):  # plotly.js: one PlotlyBundle per kernel
            code = (data.get("state") or {}).get(key)
            if isinstance(code, str) and code:
                digest = hashlib.sha1(code.encode()).hexdigest()
                if digest not in self.bundles:
                    self.bundles[digest] = len(json.dumps(code))
                    size -= self.bundles[digest]
        self.sizes.append(size)
        return super().comm(*args, **kwargs)

    def bundle_bytes(self) -> int:
        return sum(self.bundles.values())


def recording_opens() -> Any:
    """Widgets created inside the block send through recording comms (openings included)."""
    return recording_comms(OpeningRecorder())


def main() -> None:
    from ipywidgets import widget as widget_module

    import hubwidgets as hw

    with recording_opens() as recorder:
        measure(hw, widget_module, recorder)


def figure_payload(figure) -> int:
    """Bytes of a figure widget's state without its JavaScript bundle."""
    from ipywidgets.widgets.widget import _remove_buffers

    state = {k: v for k, v in figure.get_state().items() if k not in ("_esm", "_css")}
    state, _paths, buffers = _remove_buffers(state)
    return len(json.dumps(state, default=str)) + sum(len(memoryview(b)) for b in buffers)


def measure(hw, widget_module, recorder) -> None:
    def widgets_made(model) -> int:
        before = len(widget_module.Widget.widgets)
        hw.explore(model)
        return len(widget_module.Widget.widgets) - before

    model = resnet50()
    recorder.clear()
    recorder.bundles.clear()
    dashboard = hw.explore(model)
    first = recorder.bytes_sent()  # bundles already left out, once each
    bundles = recorder.bundle_bytes()
    # the overview filling in from the background statistics is not a selection's traffic
    recorder.clear()
    dashboard.wait()
    statistics_fill = recorder.bytes_sent()
    changes = []
    for path in ("resnet50/conv2_block1_1_conv", "resnet50/conv5_block3_3_conv",
                 "resnet50/predictions/kernel"):
        recorder.clear()
        dashboard.explorer.handle_action({"action": "select", "path": path})
        changes.append(recorder.bytes_sent())
    big = hw.explore(many_layers(1000))
    emit({"first_display_bytes": first + bundles, "explorer_bundle_bytes": bundles,
          "statistics_fill_bytes": statistics_fill,
          "selection_change_bytes_max": max(changes),
          "widgets_tiny_model": widgets_made(many_layers(3)),
          "widgets_resnet50": widgets_made(model),
          "overview_rows_1000": len(big.weights.overview.names),
          "overview_bytes_1000": figure_payload(big.weights.figure)})


if __name__ == "__main__":
    main()
