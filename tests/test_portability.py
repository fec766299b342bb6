"""Nothing in the runtime is tied to one CPU family: caches are per machine, sessions take any CPU."""

import platform

import edgetf
from edgetf import session


def test_machine_tag_names_architecture_and_onnxruntime():
    tag = session.machine_tag()
    assert tag.startswith(platform.machine().lower()) and tag.endswith(f"ort{session.ort.__version__}")


def test_optimized_cache_is_not_reused_on_another_machine(tiny, tmp_path, monkeypatch):
    """A graph optimized at level "all" is CPU-specific: a cache copied from another machine is a miss."""
    built = tiny.get("distilbert-sst2")
    options = edgetf.SessionOptions(optimized_cache=str(tmp_path))
    expected = edgetf.pipeline(None, built.bundle, dtype="fp32", session_options=options)("portable?")
    here = list(tmp_path.glob("*.onnx"))
    assert len(here) == 1 and session.machine_tag() in here[0].name

    monkeypatch.setattr(session, "machine_tag", lambda: "otherarch-0badc0de-ort0.0")
    got = edgetf.pipeline(None, built.bundle, dtype="fp32", session_options=options)("portable?")
    names = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert len(names) == 2 and any("otherarch-0badc0de" in n for n in names)
    assert got == expected


def test_cpu_session_uses_only_the_cpu_provider(tiny):
    built = tiny.get("distilbert-sst2")
    pipe = edgetf.pipeline(None, built.bundle)
    pipe("hello")
    assert pipe.session().providers == ["CPUExecutionProvider"]
    assert "cpu" in edgetf.available_providers()
