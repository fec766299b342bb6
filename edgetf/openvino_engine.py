"""Run a bundle's ONNX files with the OpenVINO runtime (the optional ``[openvino]`` extra).

``device="openvino"`` uses onnxruntime's OpenVINOExecutionProvider where the onnxruntime-openvino build is
installed; otherwise :func:`edgetf.session.open_session` builds an :class:`OpenVINOSession` here, which has
the surface of :class:`edgetf.session.Session` (``inputs``, ``output_names``, ``input_dtype``, ``run``,
``path``, ``device``, ``providers``). OpenVINO is faster on static shapes, so the graph is compiled once per
distinct set of input shapes and the last few compiled graphs are kept (``CACHE_SIZE``);
``SessionOptions.optimized_cache`` also turns on OpenVINO's on-disk cache of compiled graphs
(``<folder>/openvino``). The ``qdq`` dtype (static int8 QDQ MatMuls) is the file OpenVINO runs as int8.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, DeviceError, InferenceError

INSTALL_HINT = "pip install 'edgetf[openvino]'"
CACHE_SIZE = 8  # compiled graphs kept per file (one per distinct set of input shapes)

# OpenVINO element type name -> (onnxruntime-style type string, numpy dtype)
_TYPES: dict[str, tuple[str, type]] = {
    "f32": ("tensor(float)", np.float32),
    "f16": ("tensor(float16)", np.float16),
    "f64": ("tensor(double)", np.float64),
    "i64": ("tensor(int64)", np.int64),
    "i32": ("tensor(int32)", np.int32),
    "i8": ("tensor(int8)", np.int8),
    "u8": ("tensor(uint8)", np.uint8),
    "boolean": ("tensor(bool)", np.bool_),
}


@dataclass(frozen=True)
class InputInfo:
    """A declared graph input, shaped like onnxruntime's NodeArg: ``type`` is e.g. "tensor(int64)", ``shape``
    lists ints for static dimensions and names (str) for dynamic ones."""

    name: str
    type: str
    shape: list[Any]


def load_openvino() -> Any:
    """The ``openvino`` module, or DeviceError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise DeviceError(
            f"device='openvino' needs the OpenVINO runtime, which is not installed: {INSTALL_HINT} "
            "(or the onnxruntime-openvino build), or use device='cpu'"
        ) from exc
    return openvino


class OpenVINOSession:
    """One ONNX file compiled by OpenVINO for the CPU; thread-safe (one infer request per compiled shape,
    used under a lock)."""

    def __init__(self, path: Path, device: str = "openvino", options: Any = None):
        ov = load_openvino()
        self.path = Path(path)
        self.device = device
        self.options = options
        self.providers = ["OpenVINO:CPU"]
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises its own (pybind) exception types
            raise BundleError(f"OpenVINO cannot read {self.path}: {exc}") from exc
        self.inputs: dict[str, InputInfo] = {}
        for port in self._model.inputs:
            type_name, _ = _TYPES.get(port.get_element_type().get_type_name(), ("tensor(float)", np.float32))
            shape = [d.get_length() if d.is_static else f"dim{i}" for i, d in enumerate(port.get_partial_shape())]
            self.inputs[port.get_any_name()] = InputInfo(port.get_any_name(), type_name, shape)
        self.output_names = [port.get_any_name() for port in self._model.outputs]
        threads = getattr(options, "intra_op_threads", None)
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:  # None / 0: OpenVINO's own choice, as onnxruntime's 0
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        cache = getattr(options, "optimized_cache", None)
        if cache:  # OpenVINO's own cache of compiled graphs (per input shape): faster starts
            self._config["CACHE_DIR"] = str(Path(cache) / "openvino")
        self._compiled: OrderedDict[tuple[Any, ...], tuple[Any, Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def input_dtype(self, name: str) -> type:
        for type_name, dtype in _TYPES.values():
            if type_name == self.inputs[name].type:
                return dtype
        return np.float32

    def compiled_shapes(self) -> list[tuple[Any, ...]]:
        """The input-shape keys compiled now, oldest first (at most CACHE_SIZE)."""
        with self._lock:
            return list(self._compiled)

    def compiled_for(self, feeds: Mapping[str, Any]) -> Any:
        """The openvino CompiledModel for the shapes of ``feeds`` (compiled now if they are new)."""
        return self._entry({name: np.asarray(feeds[name]) for name in self.inputs})[0]

    def _entry(self, ready: Mapping[str, np.ndarray]) -> tuple[Any, Any, threading.Lock]:
        key = tuple((name, tuple(ready[name].shape)) for name in self.inputs)
        with self._lock:
            entry = self._compiled.get(key)
            if entry is not None:
                self._compiled.move_to_end(key)
                return entry
            model = self._model.clone()
            model.reshape({name: list(shape) for name, shape in key})
            compiled = self._core.compile_model(model, "CPU", self._config)
            entry = (compiled, compiled.create_infer_request(), threading.Lock())
            self._compiled[key] = entry
            while len(self._compiled) > CACHE_SIZE:
                self._compiled.popitem(last=False)
            return entry

    def run(self, feeds: Mapping[str, Any], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on the declared subset of ``feeds``; returns {output name: array}."""
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise InferenceError(
                f"{self.path.name} needs inputs {missing} that were not given; it declares "
                f"{_describe(self.inputs)}; given: {_describe_feeds(feeds)}"
            )
        ready = {name: np.ascontiguousarray(feeds[name], dtype=self.input_dtype(name)) for name in self.inputs}
        names = outputs or self.output_names
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise InferenceError(f"{self.path.name} has no outputs {unknown}; it has {self.output_names}")
        try:
            compiled, request, lock = self._entry(ready)
            with lock:
                result = request.infer(ready)
                # the request reuses its output buffers on the next call: copy out
                values = {name: np.array(result[port]) for name, port in zip(self.output_names, compiled.outputs)}
        except Exception as exc:  # wrap OpenVINO's failure with what was fed
            feeds_text = _describe_feeds(ready)
            raise InferenceError(f"OpenVINO failed running {self.path.name} on {feeds_text}: {exc}") from exc
        return {name: values[name] for name in names}


def _describe(inputs: Mapping[str, InputInfo]) -> str:
    return ", ".join(f"{n}: {i.type} {i.shape}" for n, i in inputs.items())


def _describe_feeds(feeds: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{n}: {np.asarray(v).dtype} {list(np.asarray(v).shape)}" for n, v in feeds.items()) + "}"
