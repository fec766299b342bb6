"""Error types raised by edgetf.

Every error names the input that was wrong and what is accepted. Input errors subclass
``ValueError`` so callers that already catch ``ValueError`` keep working.
"""

from __future__ import annotations


class EdgetfError(Exception):
    """Base class of every error edgetf raises on purpose."""


class BundleError(EdgetfError):
    """A bundle folder is missing, incomplete or unreadable."""


class IntegrityError(BundleError):
    """A bundle file does not match the size or sha256 recorded in ``edgetf.json``."""


class UnknownTaskError(EdgetfError, ValueError):
    """The task name is not one edgetf knows."""


class TaskMismatchError(EdgetfError, ValueError):
    """The bundle was exported for another task than the one asked for."""


class DtypeError(EdgetfError, ValueError):
    """The dtype is unknown, or the bundle has no file for it."""


class DeviceError(EdgetfError, ValueError):
    """The device name is unknown or its execution provider is not installed."""


class InvalidInputError(EdgetfError, ValueError):
    """A pipeline input or option is not of an accepted type or value."""


class InferenceError(EdgetfError, RuntimeError):
    """onnxruntime failed; the message names the feeds' shapes and dtypes."""


class Cancelled(EdgetfError):
    """Long work (a transcription) was stopped on request: its ``cancel`` event was set or its
    ``progress`` callback returned False. Nothing is returned for the cancelled input."""
