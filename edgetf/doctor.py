"""``python -m edgetf doctor [BUNDLE]``: can this machine run edgetf, and run it well?

The checks are pure functions from facts (Python version, installed packages, providers, CPU flags, a
bundle's verification) to findings; the ``collect_*`` functions gather the facts from this machine, and
``diagnose`` joins the two. A finding at level "error" means something needed is missing: the command then
exits non-zero.
"""

from __future__ import annotations

import ctypes.util
import platform
import re
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import bundle_task
from .bundle import DTYPE_SUFFIX, Bundle, onnx_filename
from .errors import EdgetfError
from .session import DEVICE_PROVIDERS

LEVELS = ("ok", "info", "warn", "error")
MIN_PYTHON = (3, 10)
MIN_ONNXRUNTIME = (1, 17)
ARM32 = ("armv6l", "armv7l", "armv8l", "arm", "armhf", "armel")
# Execution providers other than the CPU's: the package that brings each one, and where it runs.
PROVIDER_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "CUDAExecutionProvider": ("onnxruntime-gpu (NVIDIA GPU, CUDA 12 + cuDNN 9)", ("Linux", "Windows")),
    "TensorrtExecutionProvider": ("onnxruntime-gpu plus TensorRT (libnvinfer)", ("Linux", "Windows")),
    "DmlExecutionProvider": ("onnxruntime-directml (DirectX 12 GPU)", ("Windows",)),
    "OpenVINOExecutionProvider": ("onnxruntime-openvino (Intel CPU/GPU/NPU)", ("Linux", "Windows")),
    "ROCMExecutionProvider": ("onnxruntime-rocm (AMD GPU)", ("Linux",)),
    "CoreMLExecutionProvider": ("the onnxruntime wheel for macOS", ("Darwin",)),
}
# Shared libraries the CUDA provider loads, and the pip packages that ship them.
CUDA_LIBRARIES: dict[str, str] = {
    "cudart": "nvidia-cuda-runtime-cu12",
    "cublas": "nvidia-cublas-cu12",
    "cublasLt": "nvidia-cublas-cu12",
    "cufft": "nvidia-cufft-cu12",
    "curand": "nvidia-curand-cu12",
    "cudnn": "nvidia-cudnn-cu12",
}
TENSORRT_LIBRARIES: dict[str, str] = {"nvinfer": "tensorrt-cu12-libs"}
NOT_ONNXRUNTIME = ("onnxruntime-genai", "onnxruntime-extensions", "onnxruntime-tools")


@dataclass(frozen=True)
class Finding:
    level: str  # one of LEVELS
    topic: str
    text: str


@dataclass(frozen=True)
class BundleReport:
    """What opening and verifying a bundle showed: the facts ``bundle_findings`` judges."""

    root: str
    task: str | None = None
    has_manifest: bool = False
    open_error: str | None = None  # the folder did not open at all
    file_errors: Mapping[str, str] = field(default_factory=dict)  # manifest file -> what is wrong
    files_checked: int = 0
    auto: Mapping[str, str] = field(default_factory=dict)  # component -> dtype "auto" loads (or the error)
    auto_failed_parity: tuple[str, ...] = ()
    q8_preset: str | None = None  # the CPU target the q8 files were quantized for


# ---- pure checks --------------------------------------------------------------------------------------


def platform_findings(python: Sequence[int], system: str, machine: str, bits: int) -> list[Finding]:
    version = ".".join(map(str, python[:3]))
    where = f"Python {version} on {system} {machine} ({bits}-bit)"
    found = []
    if tuple(python[:2]) < MIN_PYTHON:
        found.append(Finding("error", "python", f"{where}: edgetf needs Python >= 3.10"))
    arm32 = machine.lower() in ARM32 or (machine.lower() in ("aarch64", "arm64") and bits == 32)
    if arm32:
        found.append(
            Finding(
                "error",
                "platform",
                f"{where}: a 32-bit ARM OS is unsupported: PyPI has no onnxruntime wheels for armv7, "
                "so the runtime cannot install; use a 64-bit OS (e.g. Raspberry Pi OS 64-bit) on the same board",
            )
        )
    elif bits == 32:
        found.append(
            Finding("error", "platform", f"{where}: 32-bit Python is unsupported: onnxruntime ships 64-bit wheels")
        )
    if not found:
        found.append(Finding("ok", "python", where))
    return found


def onnxruntime_distributions(dists: Mapping[str, str]) -> dict[str, str]:
    """The installed packages that provide the ``onnxruntime`` module (name -> version)."""
    found = {}
    for name, version in dists.items():
        norm = re.sub(r"[-_.]+", "-", name.lower())
        if (norm.startswith("onnxruntime") or norm.startswith("ort-nightly")) and not norm.startswith(NOT_ONNXRUNTIME):
            found[norm] = version
    return found


def package_findings(dists: Mapping[str, str]) -> list[Finding]:
    ort = onnxruntime_distributions(dists)
    if not ort:
        return [Finding("error", "onnxruntime", "no onnxruntime package is installed: pip install onnxruntime")]
    listed = ", ".join(f"{name} {version}" for name, version in sorted(ort.items()))
    if len(ort) == 1:
        version = next(iter(ort.values()))
        numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
        if numbers < MIN_ONNXRUNTIME:
            return [Finding("error", "onnxruntime", f"{listed}: edgetf needs onnxruntime >= 1.17; pip install -U it")]
        return [Finding("ok", "onnxruntime", listed)]
    keep = sorted(name for name in ort if name != "onnxruntime")
    if "onnxruntime" in ort and len(keep) == 1:
        advice = (
            f"remove onnxruntime (the CPU build; {keep[0]} runs on the CPU too): "
            f"pip uninstall -y onnxruntime {keep[0]} && pip install {keep[0]}"
        )
    else:
        advice = f"keep one: pip uninstall -y {' '.join(sorted(ort))} && pip install <the one you need>"
    return [
        Finding(
            "error",
            "onnxruntime",
            f"{listed} are installed together: they write the same onnxruntime/ folder, so whichever was "
            f"installed last wins, often without its providers; {advice} (reinstalling puts back the shared files)",
        )
    ]


def missing_libraries(names: Mapping[str, str], found: Mapping[str, bool]) -> list[str]:
    return [name for name in names if not found.get(name, False)]


def provider_findings(
    providers: Sequence[str],
    dists: Mapping[str, str],
    libraries: Mapping[str, bool],
    system: str,
    device: str | None = None,
) -> list[Finding]:
    """providers: onnxruntime's names (ort.get_available_providers()); libraries: name -> found."""
    found: list[Finding] = []
    names = {v: k for k, v in DEVICE_PROVIDERS.items()}
    shown = ", ".join(names.get(p, p) for p in providers) or "none"
    wanted = DEVICE_PROVIDERS.get(device.split(":")[0]) if device else None
    if "CPUExecutionProvider" not in providers:
        found.append(Finding("error", "providers", f"{shown}: no CPUExecutionProvider; reinstall onnxruntime"))
    else:
        found.append(Finding("ok", "providers", shown))
    ort = onnxruntime_distributions(dists)
    gpu_lib_needs = {"CUDAExecutionProvider": CUDA_LIBRARIES, "TensorrtExecutionProvider": TENSORRT_LIBRARIES}
    for provider, needs in gpu_lib_needs.items():
        if provider not in providers:
            continue
        missing = missing_libraries(needs, libraries)
        if provider == "TensorrtExecutionProvider":
            missing += missing_libraries(CUDA_LIBRARIES, libraries)
        if missing:
            packages = sorted({{**CUDA_LIBRARIES, **TENSORRT_LIBRARIES}[m] for m in missing})
            level = "error" if wanted == provider else "warn"
            found.append(
                Finding(
                    level,
                    "providers",
                    f"{names.get(provider, provider)} is built in but its libraries were not found "
                    f"({', '.join('lib' + m for m in dict.fromkeys(missing))}): sessions on it will fail; "
                    f"install the CUDA 12 toolkit and cuDNN 9, or pip install {' '.join(packages)}",
                )
            )
    for provider, (source, systems) in PROVIDER_SOURCES.items():
        if provider in providers or (system not in systems and wanted != provider):
            continue
        if provider == "CUDAExecutionProvider" and "onnxruntime-gpu" in ort:
            why = "onnxruntime-gpu is installed but the onnxruntime module in use lacks CUDA (see the package check)"
        elif system not in systems:
            why = f"not available on {system}; it comes with {source} on {' / '.join(systems)}"
        else:
            why = f"comes with {source}"
        level = "error" if wanted == provider else "info"
        found.append(Finding(level, "providers", f"no {names.get(provider, provider)}: {why}"))
    if device and wanted is None:
        accepted = ", ".join(DEVICE_PROVIDERS)
        found.append(Finding("error", "providers", f"unknown device {device!r}; accepted: {accepted}"))
    elif wanted and wanted not in providers and wanted not in PROVIDER_SOURCES:
        found.append(Finding("error", "providers", f"device {device!r} needs {wanted}, which is not available"))
    return found


def q8_preset(machine: str, flags: Iterable[str]) -> str:
    """The q8 export preset this CPU implies (export/quantize.py's host_target): arm64, avx512 or avx2."""
    flags = set(flags)
    if machine.lower() in ("aarch64", "arm64") or machine.lower().startswith("armv8"):
        return "arm64"
    return "avx512" if {"avx512_vnni", "avx_vnni"} & flags else "avx2"


def cpu_findings(machine: str, flags: Iterable[str]) -> list[Finding]:
    flags = set(flags)
    preset = q8_preset(machine, flags)
    if preset == "arm64":
        if "asimddp" in flags:
            extra = " and i8mm (SMMLA)" if "i8mm" in flags else ""
            return [
                Finding("ok", "cpu int8", f"ARM dot-product (asimddp){extra}: int8 runs on SDOT; q8 preset arm64 (s8)")
            ]
        return [
            Finding(
                "warn",
                "cpu int8",
                "no ARM dot-product (asimddp; e.g. Cortex-A72, Raspberry Pi 4): q8 runs (preset arm64, s8 weights) "
                "on widening multiplies, so it gains less over fp32 than on a dot-product CPU",
            )
        ]
    if preset == "avx512":
        which = "AVX512-VNNI" if "avx512_vnni" in flags else "AVX-VNNI"
        return [Finding("ok", "cpu int8", f"{which}: q8 preset avx512 (s8 weights on VNNI dot products)")]
    if "avx2" in flags:
        return [Finding("ok", "cpu int8", "AVX2 without VNNI: q8 preset avx2 (u8 weights: no u8 x s8 saturation)")]
    return [
        Finding(
            "warn",
            "cpu int8",
            "no AVX2 (or the CPU flags could not be read): q8 runs on onnxruntime's SSE kernels and gains "
            "little over fp32; preset avx2",
        )
    ]


def bundle_findings(report: BundleReport, host_preset: str | None = None) -> list[Finding]:
    topic = "bundle"
    if report.open_error is not None:
        return [Finding("error", topic, f"{report.root}: {report.open_error}")]
    found = []
    if not report.has_manifest:
        found.append(
            Finding("info", topic, f"{report.root}: no edgetf.json (an onnx-community folder): nothing to verify")
        )
    elif report.file_errors:
        for rel, problem in report.file_errors.items():
            found.append(Finding("error", topic, f"{rel}: {problem}"))
    else:
        found.append(
            Finding("ok", topic, f"{report.root}: {report.files_checked} files match edgetf.json (size, sha256)")
        )
    if report.task is None:
        found.append(Finding("error", topic, "no task: edgetf.json has none and config.json's architectures name none"))
    else:
        found.append(Finding("ok", topic, f"task {report.task}"))
    loads = [f"{component} {dtype}" for component, dtype in report.auto.items()]
    failed = [c for c, d in report.auto.items() if d not in DTYPE_SUFFIX]
    if failed or not report.auto:
        found.append(Finding("error", topic, "dtype='auto' loads nothing: " + ("; ".join(loads) or "no onnx/ files")))
    else:
        found.append(Finding("ok", topic, f"dtype='auto' loads {', '.join(loads)}"))
    if report.auto_failed_parity:
        found.append(Finding("warn", topic, f"{', '.join(report.auto_failed_parity)} failed parity at export time"))
    uses_q8 = any(d == "q8" for d in report.auto.values())
    if uses_q8 and report.q8_preset and host_preset and report.q8_preset != host_preset:
        risky = report.q8_preset == "avx512" and host_preset == "avx2"
        found.append(
            Finding(
                "warn" if risky else "info",
                topic,
                f"q8 was quantized for {report.q8_preset}, this CPU implies {host_preset}"
                + (": s8 weights can saturate u8 x s8 products without VNNI" if risky else "")
                + f"; re-export with --target {host_preset} for its recipe",
            )
        )
    return found


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.level == "error" for f in findings) else 0


def format_findings(findings: Iterable[Finding]) -> str:
    return "\n".join(f"{f.level:5}  {f.topic:11} {f.text}" for f in findings)


# ---- collectors: the facts of this machine --------------------------------------------------------------


def collect_distributions() -> dict[str, str]:
    """Installed packages (name -> version). A frozen app keeps little package metadata: when no onnxruntime
    package is listed but the module imports, it is reported by its module version."""
    from importlib.metadata import distributions

    found = {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"]}
    if not onnxruntime_distributions(found) and getattr(sys, "frozen", False):
        try:
            import onnxruntime
        except ImportError:
            return found
        found["onnxruntime"] = onnxruntime.__version__
    return found


def collect_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def collect_libraries(names: Iterable[str], dists: Mapping[str, str]) -> dict[str, bool]:
    """Whether each shared library is found (ldconfig / the loader path), or shipped by its nvidia-* wheel."""
    sources = {**CUDA_LIBRARIES, **TENSORRT_LIBRARIES}
    installed = {re.sub(r"[-_.]+", "-", n.lower()) for n in dists}
    return {name: ctypes.util.find_library(name) is not None or sources.get(name) in installed for name in names}


def collect_cpu_flags(system: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """x86 ``flags`` / ARM ``Features`` from /proc/cpuinfo; on macOS the dot-product feature from sysctl."""
    if system == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_DotProd"], capture_output=True, text=True, timeout=5
            )
        except OSError:
            return set()
        return {"asimddp"} if out.stdout.strip() == "1" else set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    return cpu_flags_from_cpuinfo(text)


def cpu_flags_from_cpuinfo(text: str) -> set[str]:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def components(bundle: Bundle) -> list[str]:
    """Graph names under onnx/ (``model``, ``encoder_model`` ...), dtype suffixes stripped."""
    suffixes = sorted((s for s in DTYPE_SUFFIX.values() if s), key=len, reverse=True)
    found = []
    for path in sorted((bundle.root / "onnx").glob("*.onnx")):
        stem = path.stem
        base = next((stem[: -len(s)] for s in suffixes if stem.endswith(s)), stem)
        if base not in found:
            found.append(base)
    return found


def inspect_bundle(path: str | Path, task_of: Callable[[Bundle], str | None]) -> BundleReport:
    """Open the bundle with sizes checked, hash every file edgetf.json lists, resolve dtype='auto'."""
    try:
        bundle = Bundle.open(path, verify="size")
    except EdgetfError as exc:
        return BundleReport(root=str(path), open_error=str(exc))
    checked = Bundle(root=bundle.root, config=bundle.config, manifest=bundle.manifest, verify="full")
    errors = {}
    listed = list((bundle.manifest or {}).get("files", {}))
    for rel in listed:
        try:
            checked.file(rel)
        except EdgetfError as exc:
            errors[rel] = str(exc)
    auto, failed, q8 = {}, [], None
    for component in components(bundle):
        try:
            dtype = bundle.resolve_dtype("auto", component)
        except EdgetfError as exc:
            auto[component] = f"error: {exc}"
            continue
        auto[component] = dtype
        if bundle.dtype_report(dtype).get("passed") is False:
            failed.append(f"{onnx_filename(component, dtype)}")
    for recipe in bundle.dtype_report("q8").get("recipe", {}).values():
        preset = recipe.get("preset") if isinstance(recipe, dict) else None
        if isinstance(preset, dict):
            q8 = preset.get("name", q8)
    return BundleReport(
        root=str(bundle.root),
        task=task_of(bundle),
        has_manifest=bundle.manifest is not None,
        file_errors=errors,
        files_checked=len(listed),
        auto=auto,
        auto_failed_parity=tuple(failed),
        q8_preset=q8,
    )


def diagnose(bundle: str | Path | None = None, device: str | None = None) -> list[Finding]:
    """Every finding for this machine (and the bundle, when given)."""
    system, machine = platform.system(), platform.machine()
    bits = struct.calcsize("P") * 8
    findings = platform_findings(sys.version_info[:3], system, machine, bits)
    dists = collect_distributions()
    findings += package_findings(dists)
    try:
        providers = collect_providers()
    except ImportError as exc:
        findings.append(Finding("error", "providers", f"onnxruntime does not import: {exc}"))
        providers = None
    if providers is not None:
        libs = collect_libraries([*CUDA_LIBRARIES, *TENSORRT_LIBRARIES], dists)
        findings += provider_findings(providers, dists, libs, system, device)
    flags = collect_cpu_flags(system)
    findings += cpu_findings(machine, flags)
    if bundle is not None:
        findings += bundle_findings(inspect_bundle(bundle, bundle_task), q8_preset(machine, flags))
    return findings
