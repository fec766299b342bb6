"""`python -m edgetf doctor`: every finding from faked facts (pure functions), the collectors, a real bundle."""

from __future__ import annotations

import platform
import shutil

import pytest

from edgetf import __main__ as cli
from edgetf import bundle_task, doctor
from edgetf.doctor import BundleReport, Finding

CUDA_OK = dict.fromkeys([*doctor.CUDA_LIBRARIES, *doctor.TENSORRT_LIBRARIES], True)


def levels(findings: list[Finding]) -> list[str]:
    return [f.level for f in findings]


def only(findings: list[Finding], level: str) -> list[str]:
    return [f.text for f in findings if f.level == level]


# ---- platform -------------------------------------------------------------------------------------------


def test_64_bit_linux_and_python_310_are_fine():
    found = doctor.platform_findings((3, 10, 4), "Linux", "x86_64", 64)
    assert found == [Finding("ok", "python", "Python 3.10.4 on Linux x86_64 (64-bit)")]


@pytest.mark.parametrize(("machine", "bits"), [("armv7l", 32), ("armv6l", 32), ("aarch64", 32), ("armv8l", 32)])
def test_32_bit_arm_is_named_unsupported_with_the_reason(machine, bits):
    found = doctor.platform_findings((3, 11, 2), "Linux", machine, bits)
    (text,) = only(found, "error")
    assert "32-bit ARM OS is unsupported" in text and "no onnxruntime wheels for armv7" in text
    assert "64-bit OS" in text


def test_old_python_and_32_bit_x86_are_errors():
    assert "needs Python >= 3.10" in only(doctor.platform_findings((3, 9, 18), "Linux", "x86_64", 64), "error")[0]
    assert "64-bit wheels" in only(doctor.platform_findings((3, 11, 0), "Windows", "x86", 32), "error")[0]


# ---- onnxruntime packages --------------------------------------------------------------------------------


def test_one_onnxruntime_is_fine_and_unrelated_onnxruntime_packages_do_not_count():
    found = doctor.package_findings({"onnxruntime": "1.20.1", "onnxruntime-genai": "0.5", "numpy": "2.1"})
    assert found == [Finding("ok", "onnxruntime", "onnxruntime 1.20.1")]


def test_no_onnxruntime_or_a_too_old_one_is_an_error():
    assert "pip install onnxruntime" in only(doctor.package_findings({"numpy": "2.1"}), "error")[0]
    assert ">= 1.17" in only(doctor.package_findings({"onnxruntime": "1.16.3"}), "error")[0]


@pytest.mark.parametrize("gpu_name", ["onnxruntime-gpu", "onnxruntime_gpu", "ONNXRuntime-GPU"])
def test_cpu_and_gpu_wheels_together_is_a_conflict_naming_the_one_to_remove(gpu_name):
    (text,) = only(doctor.package_findings({"onnxruntime": "1.20.1", gpu_name: "1.20.1"}), "error")
    assert "remove onnxruntime (the CPU build" in text
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in text


def test_two_accelerated_wheels_together_is_a_conflict_too():
    (text,) = only(doctor.package_findings({"onnxruntime-gpu": "1.20", "onnxruntime-directml": "1.20"}), "error")
    assert "keep one" in text and "onnxruntime-directml" in text


# ---- execution providers ---------------------------------------------------------------------------------


def test_cpu_only_linux_lists_providers_and_says_where_the_others_come_from():
    found = doctor.provider_findings(["CPUExecutionProvider"], {"onnxruntime": "1.20"}, {}, "Linux")
    assert found[0] == Finding("ok", "providers", "cpu")
    assert "no cuda: comes with onnxruntime-gpu" in only(found, "info")[0]
    assert not only(found, "error") and not any("coreml" in t or "dml" in t for t in only(found, "info"))
    assert doctor.exit_code(found) == 0


def test_cuda_built_in_but_cudnn_missing_warns_and_names_the_library_and_package():
    libs = {**CUDA_OK, "cudnn": False}
    found = doctor.provider_findings(
        ["CUDAExecutionProvider", "CPUExecutionProvider"], {"onnxruntime-gpu": "1.20"}, libs, "Linux"
    )
    (text,) = only(found, "warn")
    assert "libcudnn" in text and "libcudart" not in text and "nvidia-cudnn-cu12" in text
    assert doctor.exit_code(found) == 0
    required = doctor.provider_findings(
        ["CUDAExecutionProvider", "CPUExecutionProvider"], {"onnxruntime-gpu": "1.20"}, libs, "Linux", "cuda:0"
    )
    assert "libcudnn" in only(required, "error")[0] and doctor.exit_code(required) == 1


def test_cuda_with_its_libraries_is_clean():
    found = doctor.provider_findings(
        ["CUDAExecutionProvider", "CPUExecutionProvider"], {"onnxruntime-gpu": "1.20"}, CUDA_OK, "Linux", "cuda"
    )
    assert levels(found)[0] == "ok" and not only(found, "warn") and not only(found, "error")


def test_gpu_wheel_without_cuda_provider_points_at_the_package_conflict():
    found = doctor.provider_findings(
        ["CPUExecutionProvider"], {"onnxruntime": "1.20", "onnxruntime-gpu": "1.20"}, {}, "Linux", "cuda"
    )
    (text,) = only(found, "error")
    assert "onnxruntime-gpu is installed but the onnxruntime module in use lacks CUDA" in text


def test_a_device_of_another_platform_or_unknown_is_an_error():
    coreml = doctor.provider_findings(["CPUExecutionProvider"], {}, {}, "Linux", "coreml")
    assert "not available on Linux" in only(coreml, "error")[0]
    unknown = doctor.provider_findings(["CPUExecutionProvider"], {}, {}, "Linux", "tpu")
    assert "unknown device 'tpu'" in only(unknown, "error")[0]
    xnnpack = doctor.provider_findings(["CPUExecutionProvider"], {}, {}, "Linux", "xnnpack")
    assert "needs XnnpackExecutionProvider" in only(xnnpack, "error")[0]
    assert doctor.exit_code(doctor.provider_findings(["AzureExecutionProvider"], {}, {}, "Linux")) == 1


def test_macos_mentions_coreml_not_cuda():
    found = doctor.provider_findings(["CPUExecutionProvider"], {}, {}, "Darwin")
    assert [t.split(":")[0] for t in only(found, "info")] == ["no coreml"]


# ---- CPU int8 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "flags", "preset", "level", "says"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "avx512", "ok", "AVX512-VNNI"),
        ("x86_64", {"avx2", "avx_vnni"}, "avx512", "ok", "AVX-VNNI"),
        ("AMD64", {"avx2", "fma"}, "avx2", "ok", "AVX2 without VNNI"),
        ("x86_64", {"sse4_2"}, "avx2", "warn", "no AVX2"),
        ("aarch64", {"fp", "asimd", "asimddp"}, "arm64", "ok", "ARM dot-product (asimddp)"),
        ("arm64", {"asimddp", "i8mm"}, "arm64", "ok", "i8mm"),
        ("aarch64", {"fp", "asimd"}, "arm64", "warn", "no ARM dot-product"),
    ],
)
def test_cpu_int8_features_and_the_q8_preset_they_imply(machine, flags, preset, level, says):
    assert doctor.q8_preset(machine, flags) == preset
    (finding,) = doctor.cpu_findings(machine, flags)
    assert finding.level == level and says in finding.text and preset in finding.text


def test_cpuinfo_flags_are_read_for_x86_and_arm(tmp_path):
    x86 = "processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_vnni\n"
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 asimddp\n"
    assert doctor.cpu_flags_from_cpuinfo(x86) == {"fpu", "avx2", "avx512_vnni"}
    assert doctor.cpu_flags_from_cpuinfo(arm) == {"fp", "asimd", "evtstrm", "crc32", "asimddp"}
    (tmp_path / "cpuinfo").write_text(arm)
    assert "asimddp" in doctor.collect_cpu_flags("Linux", tmp_path / "cpuinfo")
    assert doctor.collect_cpu_flags("Linux", tmp_path / "absent") == set()


def test_the_preset_matches_the_exporters_choice_on_this_machine():
    quantize = pytest.importorskip("export.quantize")
    flags = doctor.collect_cpu_flags(platform.system())
    assert doctor.q8_preset(platform.machine(), flags) == quantize.host_target()


def test_libraries_count_as_found_from_the_loader_or_their_nvidia_wheel(monkeypatch):
    monkeypatch.setattr(
        doctor.ctypes.util, "find_library", lambda name: "libcudart.so.12" if name == "cudart" else None
    )
    found = doctor.collect_libraries(["cudart", "cudnn", "cublas"], {"nvidia_cudnn_cu12": "9.1"})
    assert found == {"cudart": True, "cudnn": True, "cublas": False}


# ---- bundles ---------------------------------------------------------------------------------------------


@pytest.fixture
def bundle_copy(tiny, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(tiny.get("distilbert-sst2").bundle, target)
    return target


def test_a_good_bundle_verifies_and_auto_loads_its_verified_default(bundle_copy, tiny):
    report = doctor.inspect_bundle(bundle_copy, bundle_task)
    manifest = tiny.get("distilbert-sst2").manifest
    assert report.file_errors == {} and report.files_checked == len(manifest["files"])
    assert report.auto == {"model": manifest["default_dtype"]} and report.task == "text-classification"
    found = doctor.bundle_findings(report, host_preset=report.q8_preset)
    assert levels(found) == ["ok", "ok", "ok"]
    assert f"dtype='auto' loads model {manifest['default_dtype']}" in found[2].text


def test_a_changed_file_of_the_same_size_fails_verification_naming_it(bundle_copy):
    data = bundle_copy / "onnx" / "model.onnx_data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    found = doctor.bundle_findings(doctor.inspect_bundle(bundle_copy, bundle_task))
    (text,) = only(found, "error")
    assert text.startswith("onnx/model.onnx_data: ") and "sha256" in text
    assert doctor.exit_code(found) == 1


def test_a_truncated_file_or_a_missing_folder_is_an_error(bundle_copy, tmp_path):
    (bundle_copy / "tokenizer.json").write_text("{}")
    (text,) = only(doctor.bundle_findings(doctor.inspect_bundle(bundle_copy, bundle_task)), "error")
    assert "tokenizer.json" in text and "bytes" in text
    missing = doctor.bundle_findings(doctor.inspect_bundle(tmp_path / "nowhere", bundle_task))
    assert "does not exist" in only(missing, "error")[0]


def test_bundle_findings_from_hand_made_reports():
    foreign = BundleReport(root="b", task="fill-mask", auto={"model": "fp32"})
    assert levels(doctor.bundle_findings(foreign)) == ["info", "ok", "ok"]
    no_task = BundleReport(root="b", has_manifest=True, files_checked=3, auto={"model": "q8"})
    assert "no task" in only(doctor.bundle_findings(no_task), "error")[0]
    empty = BundleReport(root="b", task="ner", has_manifest=True, auto={})
    assert "loads nothing" in only(doctor.bundle_findings(empty), "error")[0]
    failed = BundleReport(root="b", task="ner", auto={"model": "fp32"}, auto_failed_parity=("onnx/model.onnx",))
    assert "failed parity" in only(doctor.bundle_findings(failed), "warn")[0]


def test_q8_quantized_for_vnni_warns_on_an_avx2_cpu_and_notes_other_mismatches():
    report = BundleReport(root="b", task="ner", has_manifest=True, auto={"model": "q8"}, q8_preset="avx512")
    (warn,) = only(doctor.bundle_findings(report, host_preset="avx2"), "warn")
    assert "saturate" in warn and "--target avx2" in warn
    (info,) = only(doctor.bundle_findings(report, host_preset="arm64"), "info")
    assert "--target arm64" in info
    assert not only(doctor.bundle_findings(report, host_preset="avx512"), "warn")


# ---- the command -----------------------------------------------------------------------------------------


def test_doctor_command_exits_1_on_a_package_conflict_and_0_when_all_is_well(monkeypatch, capsys, bundle_copy):
    monkeypatch.setattr(doctor, "collect_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(doctor, "collect_cpu_flags", lambda system: {"avx2", "avx512_vnni"})
    monkeypatch.setattr(doctor.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(doctor, "collect_distributions", lambda: {"onnxruntime": "1.20.0"})
    assert cli.main(["doctor", str(bundle_copy)]) == 0
    out = capsys.readouterr().out
    assert "ok     onnxruntime onnxruntime 1.20.0" in out and "files match edgetf.json" in out
    monkeypatch.setattr(doctor, "collect_distributions", lambda: {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"})
    assert cli.main(["doctor"]) == 1
    assert "remove onnxruntime" in capsys.readouterr().out


def test_doctor_says_when_onnxruntime_does_not_import(monkeypatch, capsys):
    def broken():
        raise ImportError("libonnxruntime.so: cannot open shared object file")

    monkeypatch.setattr(doctor, "collect_providers", broken)
    assert cli.main(["doctor"]) == 1
    assert "onnxruntime does not import: libonnxruntime.so" in capsys.readouterr().out


def test_a_frozen_app_without_package_metadata_reports_onnxruntime_by_its_module(monkeypatch):
    import importlib.metadata

    import onnxruntime

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [])
    assert doctor.collect_distributions() == {}
    monkeypatch.setattr(doctor.sys, "frozen", True, raising=False)
    assert doctor.collect_distributions() == {"onnxruntime": onnxruntime.__version__}
