"""First display of the explorer: ``LayerExplorer(model)`` up to the state the browser paints,
against ``model.summary()`` on the same model.  ``python -m bench.display_bench resnet50|1000|10000``
"""

from __future__ import annotations

import io
import sys

from .common import median_time, emit
from .models import many_layers, resnet50


def main(which: str) -> None:
    import hubwidgets as hw
    from hubwidgets.model.session import SESSION_ATTR

    model = resnet50() if which == "resnet50" else many_layers(int(which))
    sink = io.StringIO()
    summary = median_time(lambda: model.summary(print_fn=lambda line, **_: sink.write(line)), 3)

    def first_display():  # a model never shown before: no session, so the whole walk
        model.__dict__.pop(SESSION_ATTR, None)
        return hw.LayerExplorer(model)

    explorer = median_time(first_display, 5)
    rows = len(hw.LayerExplorer(model).visible_rows())  # what a view first shows
    emit({"model": which, "summary_s": summary, "explorer_s": explorer, "rows": rows,
          "layers": len(model.layers)})


if __name__ == "__main__":
    main(sys.argv[1])
