"""A stand-in for the kernel-to-browser channel that records the size of every message, so
the bytes a widget sends can be measured (and tested) without a browser."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator


class CommRecorder:
    """The sizes, in bytes, of every message sent by the widgets created while recording."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.messages: list[dict] = []  # what each message sent, as it was sent
        self.count = 0

    def bytes_sent(self) -> int:
        return sum(self.sizes)

    def clear(self) -> None:
        self.sizes.clear()
        self.messages.clear()

    def answers(self) -> list[dict]:
        """The responses to anywidget requests sent so far (``{"id", "response", ...}``)."""
        return [d["content"] for d in self.messages if d.get("method") == "custom" and
                isinstance(d.get("content"), dict) and
                d["content"].get("kind") == "anywidget-command-response"]

    def comm(self, *args, **kwargs) -> "RecordingComm":
        self.count += 1
        return RecordingComm(self, f"recording-{self.count}")


class RecordingComm:
    """One widget's channel: ``send`` measures the JSON and binary buffers it would send."""

    kernel = object()

    def __init__(self, recorder: CommRecorder, comm_id: str) -> None:
        self.recorder = recorder
        self.comm_id = comm_id

    def send(self, data=None, metadata=None, buffers=None) -> None:
        self.recorder.messages.append(data or {})
        self.recorder.sizes.append(len(json.dumps(data or {}, default=str))
                                   + sum(len(memoryview(b)) for b in buffers or ()))

    def open(self, *args, **kwargs) -> None:
        pass

    close = on_msg = on_close = open


@contextmanager
def recording_comms(recorder: CommRecorder | None = None) -> Iterator[CommRecorder]:
    """Widgets created inside the block send through ``recorder`` (a new
    :class:`CommRecorder` by default)."""
    from ipywidgets import widget as widget_module

    recorder = recorder if recorder is not None else CommRecorder()
    saved = widget_module.comm
    widget_module.comm = type("RecordingComms", (), {"create_comm": staticmethod(recorder.comm)})
    try:
        yield recorder
    finally:
        widget_module.comm = saved
