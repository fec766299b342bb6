"""Progress and cancellation of long work (a transcription), shared by the pipelines that report it.

A call takes ``progress=callable(fraction)`` (the fraction of the input done, 0 < fraction <= 1,
non-decreasing, 1.0 at the end) and ``cancel=threading.Event()``. The work checks between its steps
(Whisper's 30-second windows, ``chunk_length_s`` chunks, CTC chunks): when the event is set, or the
callback returned ``False``, it raises :class:`edgetf.errors.Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import Cancelled, InvalidInputError


def check_progress_options(progress: Any, cancel: Any) -> None:
    """A callable (or None) and an object with ``is_set()`` such as ``threading.Event`` (or None)."""
    if progress is not None and not callable(progress):
        raise InvalidInputError(f"progress must be a callable taking the fraction done, got {type(progress).__name__}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise InvalidInputError(
            f"cancel must be a threading.Event (anything with is_set()), got {type(cancel).__name__}"
        )


@dataclass
class Progress:
    """Reports fractions to the callback (never going down) and raises Cancelled when asked to stop."""

    callback: Callable[[float], Any] | None = None
    cancel: Any = None
    done: float = 0.0

    @classmethod
    def from_options(cls, options: Any) -> Progress:
        progress, cancel = options.get("progress"), options.get("cancel")
        check_progress_options(progress, cancel)
        return cls(progress, cancel)

    def check(self) -> None:
        """Raise Cancelled when the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"cancelled after {self.done:.0%} of the audio: the cancel event was set")

    def update(self, fraction: float) -> None:
        """Report ``fraction`` done (clipped to [done, 1]), then check for cancellation."""
        self.done = min(1.0, max(self.done, float(fraction)))
        if self.callback is not None and self.callback(self.done) is False:
            raise Cancelled(f"cancelled after {self.done:.0%} of the audio: the progress callback returned False")
        self.check()


def part_of(progress: Callable[[float], Any] | None, index: int, count: int) -> Callable[[float], Any] | None:
    """A callback for input ``index`` of ``count`` that reports to ``progress`` the fraction of all inputs."""
    if progress is None or count <= 1:
        return progress

    def report(fraction: float) -> Any:
        return progress((index + fraction) / count)

    return report
