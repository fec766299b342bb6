"""The base class every task pipeline derives from."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from ..bundle import Bundle
from ..errors import InvalidInputError
from ..session import Session, SessionOptions, open_session, resolve_device

UNSET: Any = object()
"""The default of an option the caller did not give (where None is a meaningful value, or to tell
"not given" from "given as the default")."""


class Pipeline:
    """Owns a bundle, its sessions (opened lazily, once) and the call-time option defaults.

    Subclasses set ``options_accepted`` (call options with their defaults) and implement
    ``setup`` (build tokenizers/processors) and ``__call__``. Pipelines pickle by bundle path
    and options; the worker reopens the sessions.
    """

    main_component: ClassVar[str] = "model"
    """The component whose ONNX file decides ``dtype="auto"`` and that ``session()`` opens by default: the
    one graph of single-graph tasks, the merged decoder for text2text, the encoder for speech (its
    override says which)."""
    options_accepted: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        bundle: Bundle,
        *,
        task: str,
        requested_task: str | None = None,
        dtype: str = "auto",
        device: str = "cpu",
        session_options: SessionOptions | None = None,
        **defaults: Any,
    ):
        self.bundle = bundle
        self.task = task
        self.requested_task = requested_task or task  # e.g. "translation_en_to_fr"
        self.device = device
        self.session_options = session_options or SessionOptions()
        qdq_ok = "qdq" in bundle.dtypes(self.main_component) and bundle.dtype_report("qdq").get("passed") is not False
        if dtype == "auto" and resolve_device(device)[0] == "openvino" and qdq_ok:
            dtype = "qdq"  # the static int8 file OpenVINO runs as int8 (unless it failed its gate)
        self.dtype = bundle.resolve_dtype(dtype, self.main_component)
        self._defaults = self.check_options(defaults)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.setup()

    def setup(self) -> None:
        """Build tokenizers/processors from the bundle's config files."""

    # -- command line and demo -----------------------------------------------------------------
    def cli_inputs(self, args: list[str]) -> Any:
        """Turn `python -m edgetf run` arguments into this task's input (default: text or list of texts)."""
        return args[0] if len(args) == 1 else list(args)

    def demo_input(self) -> Any:
        """A built-in sample input for `python -m edgetf demo`."""
        return "edgetf runs transformer models offline, fast and small."

    # -- sessions --------------------------------------------------------------------------------
    def session(self, component: str | None = None) -> Session:
        """The InferenceSession of ``onnx/<component><dtype suffix>.onnx`` (opened once)."""
        component = component or self.main_component
        with self._lock:
            sess = self._sessions.get(component)
            if sess is None:
                sess = open_session(self.bundle.onnx(component, self.dtype), self.device, self.session_options)
                self._sessions[component] = sess
        return sess

    # -- options ---------------------------------------------------------------------------------
    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options_accepted))
        if unknown:
            raise InvalidInputError(
                f"{self.task} does not accept option(s) {unknown}; accepted: {sorted(self.options_accepted)}"
            )
        return dict(options)

    def options(self, call_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Accepted defaults <- construction-time options <- call-time options."""
        merged = dict(self.options_accepted)
        merged.update(self._defaults)
        merged.update(self.check_options(call_kwargs))
        return merged

    # -- pickling --------------------------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        args = (
            type(self),
            self.task,
            self.requested_task,
            str(self.bundle.root),
            self.dtype,
            self.device,
            self.session_options,
            self.bundle.verify,
            self._defaults,
        )
        return (_reopen, args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, bundle={str(self.bundle.root)!r}, dtype={self.dtype!r})"


def _reopen(
    cls: type[Pipeline],
    task: str,
    requested_task: str,
    root: str,
    dtype: str,
    device: str,
    session_options: SessionOptions,
    verify: str,
    defaults: dict[str, Any],
) -> Pipeline:
    """Unpickling: the same pipeline class over the reopened bundle (the task was checked when it was built)."""
    bundle = Bundle.open(root, verify=verify)
    return cls(
        bundle,
        task=task,
        requested_task=requested_task,
        dtype=dtype,
        device=device,
        session_options=session_options,
        **defaults,
    )


def given(options: Mapping[str, Any], name: str, default: Any) -> Any:
    """``options[name]``, or ``default`` where the option is absent, None or :data:`UNSET`."""
    value = options.get(name, UNSET)
    return default if value is UNSET or value is None else value
