"""The one place that builds onnxruntime InferenceSessions.

Maps device names to execution providers, applies thread and graph-optimization options, feeds a
graph only the inputs it declares (cast to the declared dtype), and turns onnxruntime failures
into errors that name the feeds' shapes and dtypes.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .errors import BundleError, DeviceError, InferenceError

DEVICE_PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
}
_GRAPH_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ORT_TYPES: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build can use, as edgetf device names (and raw names)."""
    names = {v: k for k, v in DEVICE_PROVIDERS.items()}
    return [names.get(p, p) for p in ort.get_available_providers()]


@dataclass(frozen=True)
class SessionOptions:
    """How sessions are built. Defaults suit small devices; every field can be overridden.

    intra_op_threads: None lets onnxruntime use one thread per physical core.
    allow_spinning: True (onnxruntime's default) lets worker threads spin briefly after each piece of
      work instead of sleeping, which is faster for short calls and token-by-token decoding; they park
      once the spin window ends, so an idle pipeline uses no CPU. False saves the spin window's CPU for
      battery-powered or oversubscribed machines. (Measured figures: README, "Devices".)
    spin_duration_us: with allow_spinning, how long (microseconds) a pool thread spins before it parks;
      None keeps onnxruntime's own window. A short window keeps most of the spin's gain between the
      operators of one call while giving the cores back sooner on a shared or oversubscribed machine,
      where spinning threads take CPU the working ones need (README, "Devices").
    enable_mem_pattern: False (edgetf's default; onnxruntime's is True). The pattern plans one allocation
      per input shape and keeps every plan, so with inputs of varying length (texts, audio, images) memory
      grows with every new shape (README, "Tasks", gives the figures). Turn it on for inputs of one fixed shape.
    optimized_cache: folder where the graph optimized for this machine is saved and reused, so
      a session does not re-optimize on every start (CPU only; keyed by file, level and machine_tag()).
    """

    intra_op_threads: int | None = None
    inter_op_threads: int | None = 1
    graph_optimization: str = "all"
    allow_spinning: bool = True
    spin_duration_us: int | None = None
    enable_mem_arena: bool = True
    enable_mem_pattern: bool = False
    optimized_cache: str | None = None
    provider_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.graph_optimization not in _GRAPH_LEVELS:
            raise ValueError(
                f"graph_optimization={self.graph_optimization!r} is not accepted; use one of {list(_GRAPH_LEVELS)}"
            )
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}={value!r} is not accepted; use None or an integer >= 0")
        spin = self.spin_duration_us
        if spin is not None and (isinstance(spin, bool) or not isinstance(spin, int) or spin < 0):
            raise ValueError(f"spin_duration_us={spin!r} is not accepted; use None or an integer >= 0 (microseconds)")

    def to_ort(self) -> ort.SessionOptions:
        """These options as a fresh onnxruntime SessionOptions, exactly as :class:`Session` builds its
        sessions (before the optimized-graph cache is applied); benchmarks use it to run bare onnxruntime
        under the same settings."""
        so = ort.SessionOptions()
        so.graph_optimization_level = _GRAPH_LEVELS[self.graph_optimization]
        if self.intra_op_threads is not None:
            so.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            so.inter_op_num_threads = self.inter_op_threads
        so.enable_cpu_mem_arena = self.enable_mem_arena
        so.enable_mem_pattern = self.enable_mem_pattern
        spin = "1" if self.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        if self.allow_spinning and self.spin_duration_us is not None:
            so.add_session_config_entry("session.intra_op.spin_duration_us", str(self.spin_duration_us))
            so.add_session_config_entry("session.inter_op.spin_duration_us", str(self.spin_duration_us))
        so.log_severity_level = 3
        return so


def resolve_device(device: str) -> tuple[str, int]:
    """'cuda:1' -> ('cuda', 1). Raises DeviceError naming the accepted devices."""
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    name, _, index = device.lower().partition(":")
    if name not in DEVICE_PROVIDERS:
        raise DeviceError(f"unknown device {device!r}; accepted: {', '.join(DEVICE_PROVIDERS)} (optionally 'cuda:N')")
    if index and not index.isdigit():
        raise DeviceError(f"device index in {device!r} must be a non-negative integer")
    return name, int(index or 0)


def providers_for(device: str, provider_options: Mapping[str, Any] | None = None) -> list[Any]:
    """Execution providers for a device; CPU is always appended as the fallback for unsupported ops."""
    name, index = resolve_device(device)
    provider = DEVICE_PROVIDERS[name]
    available = ort.get_available_providers()
    if provider not in available:
        hint = {
            "cuda": "pip install 'edgetf[gpu]' (onnxruntime-gpu) and a matching CUDA runtime",
            "tensorrt": "pip install 'edgetf[gpu]' with TensorRT installed",
            "openvino": "pip install onnxruntime-openvino",
            "dml": "pip install onnxruntime-directml (Windows)",
            "coreml": "the standard onnxruntime wheel on macOS",
        }.get(name, "an onnxruntime build that includes it")
        raise DeviceError(
            f"device {device!r} needs {provider}, which this onnxruntime build lacks "
            f"(available: {', '.join(available)}); install {hint}, or use device='cpu'"
        )
    if name == "cpu":
        return ["CPUExecutionProvider"]
    options = dict(provider_options or {})
    if name in ("cuda", "tensorrt", "rocm", "dml"):
        options.setdefault("device_id", index)
    return [(provider, options), "CPUExecutionProvider"]


class Session:
    """An InferenceSession plus its declared inputs; thread-safe like onnxruntime's ``run``."""

    def __init__(self, path: Path, device: str = "cpu", options: SessionOptions | None = None):
        self.path = Path(path)
        self.device = device
        self.options = options or SessionOptions()
        sess_options = self.options.to_ort()
        load_path = self.path
        cached = _cached_graph(self.path, device, self.options)
        if cached is not None and cached.is_file():
            load_path = cached  # already optimized for this machine: skip re-optimizing
            sess_options.graph_optimization_level = _GRAPH_LEVELS["disabled"]
        elif cached is not None:
            sess_options.optimized_model_filepath = str(cached)
            # weights beside the cached graph too, so the cached file is memory-mapped like the bundle's
            sess_options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", cached.name + "_data"
            )
            sess_options.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
        try:
            self._session = ort.InferenceSession(
                str(load_path), sess_options, providers=providers_for(device, self.options.provider_options)
            )
        except DeviceError:
            raise
        except Exception as exc:  # onnxruntime raises its own (pybind) exception types
            raise BundleError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        self.inputs = {i.name: i for i in self._session.get_inputs()}
        # inputs with a default value (initializers of the same name): fed only when given
        self.optional_inputs = {i.name: i for i in self._session.get_overridable_initializers()}
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.providers = self._session.get_providers()

    def input_dtype(self, name: str) -> type:
        return _ORT_TYPES.get(self.inputs[name].type, np.float32)

    def run(self, feeds: Mapping[str, Any], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on the declared subset of ``feeds``; returns {output name: array}."""
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise InferenceError(
                f"{self.path.name} needs inputs {missing} that were not given; it declares "
                f"{_describe_inputs(self.inputs)}; given: {_describe_feeds(feeds)}"
            )
        ready = {name: np.asarray(feeds[name], dtype=self.input_dtype(name)) for name in self.inputs}
        for name in self.optional_inputs.keys() & feeds.keys():
            ready[name] = np.asarray(feeds[name], dtype=_ORT_TYPES.get(self.optional_inputs[name].type, np.float32))
        names = outputs or self.output_names
        try:
            values = self._session.run(names, ready)
        except Exception as exc:  # wrap onnxruntime's failure with what was fed
            raise InferenceError(
                f"onnxruntime failed running {self.path.name} on {_describe_feeds(ready)}: {exc}"
            ) from exc
        return dict(zip(names, values))

    @property
    def ort_session(self) -> ort.InferenceSession:
        return self._session


def open_session(path: Path, device: str = "cpu", options: SessionOptions | None = None) -> Any:
    """The session that runs ``path`` on ``device``: an onnxruntime :class:`Session`, except for
    device="openvino" without onnxruntime's OpenVINOExecutionProvider, where the OpenVINO runtime
    runs the file (edgetf.openvino_engine.OpenVINOSession, same surface; needs the [openvino] extra)."""
    name, _ = resolve_device(device)
    if name == "openvino" and DEVICE_PROVIDERS[name] not in ort.get_available_providers():
        from .openvino_engine import OpenVINOSession

        return OpenVINOSession(Path(path), device, options or SessionOptions())
    return Session(path, device, options)


@functools.lru_cache(maxsize=1)
def machine_tag() -> str:
    """What a graph optimized at level "all" depends on: CPU architecture, its features, onnxruntime.

    Level "all" bakes in kernels and layouts for this CPU (x86 NCHWc blocks sized for AVX2 or
    AVX-512, ...), so a cache made on one machine must not be reused on another (e.g. an x86 desktop's
    cache copied to a Raspberry Pi, or an AVX-512 cache to an AVX2 laptop).
    """
    features = ""
    try:  # Linux: the "flags" (x86) or "Features" (ARM) lines; elsewhere the architecture alone
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
        features = " ".join(sorted({ln for ln in lines if ln.split(":")[0].strip() in ("flags", "Features")}))
    except OSError:
        pass
    digest = hashlib.sha256(features.encode()).hexdigest()[:8]
    return f"{platform.machine().lower() or 'cpu'}-{digest}-ort{ort.__version__}"


def _cached_graph(path: Path, device: str, options: SessionOptions) -> Path | None:
    """Where the graph optimized for this machine is cached (CPU only), keyed by file identity and machine."""
    if not options.optimized_cache or resolve_device(device)[0] != "cpu":
        return None
    cache = Path(options.optimized_cache)
    cache.mkdir(parents=True, exist_ok=True)
    stat = path.stat()
    level = options.graph_optimization
    return cache / f"{path.stem}.{stat.st_size}.{stat.st_mtime_ns}.{level}.{machine_tag()}.onnx"


def _describe_inputs(inputs: Mapping[str, Any]) -> str:
    return ", ".join(f"{n}: {i.type} {list(i.shape)}" for n, i in inputs.items())


def _describe_feeds(feeds: Mapping[str, Any]) -> str:
    parts = []
    for name, value in feeds.items():
        arr = np.asarray(value)
        parts.append(f"{name}: {arr.dtype} {list(arr.shape)}")
    return "{" + ", ".join(parts) + "}"
