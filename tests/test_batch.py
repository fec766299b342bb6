"""python -m edgetf batch: one JSON line per input (output or error), batching, resuming, exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from helpers import close

import edgetf
from edgetf.audio.io import tone
from edgetf.batch import expand, recorded, run_batch
from edgetf.errors import InvalidInputError
from edgetf.vision.samples import noise, shapes

ROOT = Path(__file__).resolve().parent.parent


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def classifier(tiny):
    return edgetf.pipeline("text-classification", tiny.get("distilbert-sst2").bundle, dtype="fp32")


def test_texts_and_jsonl_one_line_each_with_output_or_error(tmp_path, classifier):
    source = tmp_path / "texts.jsonl"
    lines = [{"text": "a fine film"}, {"inputs": "dull"}, "plain string line", {"other": 1}, {"text": 5}]
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n{broken\n")
    out = tmp_path / "out.jsonl"
    long_text = "a very long review " * 40  # longer than a file name may be: still a text
    args = ["first text", str(source), long_text, "nul\x00byte"]
    summary = run_batch(None, None, args, out=out, batch_size=3, pipe=classifier, progress=False)
    got = rows(out)
    assert [r["input"] for r in got] == [
        "first text",
        "a fine film",
        "dull",
        "plain string line",
        f"{source}:4",
        5,
        f"{source}:7",
        long_text,
        "nul\x00byte",
    ]
    for row in got:
        if isinstance(row["input"], str) and not row["input"].startswith(str(source)):
            assert close(row["output"], classifier([row["input"]])[0], 1e-6)
    errors = {r["input"]: r["error"] for r in got if "error" in r}
    assert set(errors) == {f"{source}:4", 5, f"{source}:7"}
    assert "text" in errors[f"{source}:4"]["message"] and "not JSON" in errors[f"{source}:7"]["message"]
    assert errors[5]["type"] == "InvalidInputError" and "str" in errors[5]["message"]
    assert (summary.ok, summary.new_failures, summary.failed) == (6, 3, 3)


def test_batched_equals_one_by_one(tmp_path, classifier):
    texts = [f"sentence {i} " + "word " * (i % 7) for i in range(11)]
    one = tmp_path / "one.jsonl"
    many = tmp_path / "many.jsonl"
    run_batch(None, None, texts, out=one, batch_size=1, pipe=classifier, progress=False)
    run_batch(None, None, texts, out=many, batch_size=4, pipe=classifier, progress=False)
    assert close([r["output"] for r in rows(one)], [r["output"] for r in rows(many)], 1e-5)
    assert [r["input"] for r in rows(many)] == texts


def test_resume_skips_recorded_inputs_and_cuts_a_torn_line(tmp_path, classifier):
    out = tmp_path / "out.jsonl"
    run_batch(None, None, ["a", "b", "a"], out=out, batch_size=2, pipe=classifier, progress=False)
    with out.open("a") as f:
        f.write('{"input": "c", "outp')  # killed mid-write
    summary = run_batch(None, None, ["a", "b", "a", "a", "c"], out=out, pipe=classifier, progress=False)
    assert [r["input"] for r in rows(out)] == ["a", "b", "a", "a", "c"]
    assert (summary.skipped, summary.ok) == (3, 2)
    done, failed = recorded(out)
    assert done[json.dumps("a")] == 3 and not failed


def test_image_folder_and_glob_with_a_broken_file(tmp_path, tiny):
    tmp = tmp_path
    folder = tmp / "images"
    folder.mkdir()
    shapes(40, 30).save(folder / "a.png")
    noise(33, 21, seed=3).save(folder / "b.jpg")
    (folder / "c.png").write_bytes(b"not an image")
    (folder / ".hidden.png").write_bytes(b"skipped")
    pipe = edgetf.pipeline(None, tiny.get("vit-base").bundle, dtype="fp32")
    out = tmp / "images.jsonl"
    summary = run_batch(None, None, [str(folder)], out=out, batch_size=2, pipe=pipe, progress=False)
    got = rows(out)
    assert [Path(r["input"]).name for r in got] == ["a.png", "b.jpg", "c.png"]
    assert close(got[0]["output"], pipe(str(folder / "a.png")), 1e-5)
    assert close(got[1]["output"], pipe(str(folder / "b.jpg")), 1e-5)
    assert "c.png" in got[2]["error"]["message"] and summary.failed == 1
    assert [i.record for i in expand([str(folder / "*.png")], media=True)] == [
        str(folder / "a.png"),
        str(folder / "c.png"),
    ]
    with pytest.raises(InvalidInputError, match="matches no file"):
        expand([str(folder / "*.flac")], media=True)


def test_audio_files(tmp_path, tiny):
    pipe = edgetf.pipeline(None, tiny.get("wav2vec2-ctc").bundle)
    paths = []
    for i, seconds in enumerate((0.5, 1.2)):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], tone(seconds, 16000, 200.0 + 100 * i), 16000)
    out = tmp_path / "asr.jsonl"
    run_batch(None, None, [str(p) for p in paths] + [str(tmp_path / "missing.wav")], out=out, pipe=pipe, progress=False)
    got = rows(out)
    assert [r.get("output") for r in got[:2]] == [pipe(str(p)) for p in paths]
    assert "missing.wav" in got[2]["error"]["message"]


def test_cli_progress_and_exit_code(tmp_path, tiny):
    bundle = tiny.get("distilbert-sst2").bundle
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "good"}\n{"text": 5}\n')
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "edgetf", "batch", "text-classification", str(bundle), "hello", str(source)]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "3 inputs, 2 done, 1 failed" in proc.stderr and "3/3" in proc.stderr  # the bar's last state
    assert [("output" in r) for r in rows(out)] == [True, True, False]
    again = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "3 skipped" in again.stderr and len(rows(out)) == 3
    ok = subprocess.run(
        [*cmd[:-1], "--out", str(tmp_path / "ok.jsonl"), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "1 done, 0 failed" in ok.stderr
