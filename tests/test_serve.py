"""edgetf.serve: a real uvicorn server on a loopback port, called with httpx and the official openai client.

Every answer is compared with a direct call of the same pipeline; errors are checked for their status and
message; a bounded load test (8 clients x 20 requests) checks nothing is lost, overload gives only 503s,
and resident memory stays flat.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import close

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

import edgetf  # noqa: E402
from edgetf.audio.io import tone  # noqa: E402
from edgetf.jsonable import to_json_value  # noqa: E402
from edgetf.serve import create_app  # noqa: E402
from edgetf.serve.formats import StopScanner, clock, cut_at_stop, embedding_value, srt, vtt  # noqa: E402
from edgetf.serve.models import Limits, sentence_pooling  # noqa: E402
from edgetf.vision.samples import shapes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVED = ("distilbert-sst2", "minilm-embeddings", "gpt2", "whisper-tiny", "wav2vec2-ctc", "vit-base")


@contextmanager
def running(app):
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "the server did not start within 5 s"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def models_dir(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    for name in SERVED:
        (root / name).symlink_to(tiny.get(name).bundle, target_is_directory=True)
    # a copy of the embedding bundle with a sentence-transformers Pooling config asking for the CLS token
    cls_copy = root / "minilm-cls"
    shutil.copytree(tiny.get("minilm-embeddings").bundle, cls_copy, ignore=shutil.ignore_patterns(".fingerprint"))
    modules = [{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (cls_copy / "modules.json").write_text(json.dumps(modules))
    (cls_copy / "1_Pooling").mkdir()
    (cls_copy / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    (root / "not-a-bundle").mkdir()
    return root


@pytest.fixture(scope="module")
def url(models_dir):
    with running(create_app(models_dir, max_body_bytes=2_000_000)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def oai(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def pipes(models_dir):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = edgetf.pipeline(None, models_dir / name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(path, tone(1.5, 16000, 330.0), 16000)
    return path


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "shapes.png"
    shapes(64, 48).save(path)
    return path


# -- pure formatting ----------------------------------------------------------------------------------
def test_subtitle_formats():
    rows = [{"start": 0.0, "end": 1.5, "text": " hello  world"}, {"start": 61.25, "end": 3723.007, "text": "x"}]
    assert clock(3723.007, ",") == "01:02:03,007"
    assert srt(rows) == "1\n00:00:00,000 --> 00:00:01,500\nhello world\n\n2\n00:01:01,250 --> 01:02:03,007\nx\n"
    assert vtt(rows) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nhello world\n\n00:01:01.250 --> 01:02:03.007\nx\n"


def test_stop_scanner_holds_back_a_possible_stop_and_cuts_there():
    scanner = StopScanner(["END", "\n\n"])
    pieces = ["abc", "E", "N", "x", "yz\n", "\n", "ignored"]
    out = "".join(scanner.push(p) for p in pieces) + scanner.flush()
    assert out == "abcENxyz" and scanner.stopped
    assert cut_at_stop("one two END three", ["END", "two"]) == ("one ", True)
    plain = StopScanner([])
    assert plain.push("ab") == "ab" and plain.flush() == ""


def test_embedding_base64_is_little_endian_float32():
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    decoded = np.frombuffer(base64.b64decode(embedding_value(vector, "base64")), dtype="<f4")
    assert decoded.tolist() == vector.tolist() and embedding_value(vector, "float") == vector.tolist()


def test_sentence_pooling_follows_the_pooling_config(tmp_path):
    assert sentence_pooling(tmp_path) == "mean"
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert sentence_pooling(tmp_path) == "cls"
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(edgetf.errors.BundleError, match="pooling_mode_max_tokens"):
        sentence_pooling(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "../../outside", "type": "Pooling"}]))
    assert sentence_pooling(tmp_path) == "mean"  # a module path leaving the bundle is not followed


# -- OpenAI routes ------------------------------------------------------------------------------------------
def test_models_lists_the_bundle_folders(client, oai):
    names = sorted(m.id for m in oai.models.list())
    assert names == sorted([*SERVED, "minilm-cls"])
    body = client.get("/v1/models").json()
    tasks = {m["id"]: m["task"] for m in body["data"]}
    assert tasks["distilbert-sst2"] == "text-classification" and tasks["whisper-tiny"] == "automatic-speech-recognition"
    assert oai.models.retrieve("gpt2").id == "gpt2"


@pytest.mark.parametrize("model,pooling", [("minilm-embeddings", "mean"), ("minilm-cls", "cls")])
def test_embeddings_equal_the_pipeline(oai, pipes, model, pooling):
    texts = ["the quick brown fox", "edgetf runs offline", "a"]
    expected = pipes(model)(texts, pooling=pooling, normalize=True)
    answer = oai.embeddings.create(model=model, input=texts, encoding_format="float")
    got = [d.embedding for d in sorted(answer.data, key=lambda d: d.index)]
    assert close(got, expected, 1e-5)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in got)
    assert answer.usage.prompt_tokens > 0
    # the openai client asks for base64 by default and decodes it itself
    default = oai.embeddings.create(model=model, input="the quick brown fox")
    assert close(default.data[0].embedding, expected[0], 1e-5)


def test_completions_greedy_equal_the_pipeline(oai, pipes):
    prompt = "Once upon a time"
    expected = pipes("gpt2")(prompt, max_new_tokens=8, do_sample=False, return_full_text=False)[0]["generated_text"]
    answer = oai.completions.create(model="gpt2", prompt=prompt, max_tokens=8, temperature=0)
    assert answer.choices[0].text == expected and answer.object == "text_completion"
    assert answer.usage.prompt_tokens > 0
    echo = oai.completions.create(model="gpt2", prompt=prompt, max_tokens=8, temperature=0, echo=True)
    assert echo.choices[0].text == prompt + expected
    if len(expected) > 3:
        stop = expected[2:4]
        cut = oai.completions.create(model="gpt2", prompt=prompt, max_tokens=8, temperature=0, stop=[stop])
        assert cut.choices[0].text == expected[: expected.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_completions_sampling_with_a_seed_and_n(oai, pipes):
    options = dict(max_tokens=6, temperature=0.9, top_p=0.95, seed=7, n=2)
    one = oai.completions.create(model="gpt2", prompt=["Hello", "Bye"], **options)
    two = oai.completions.create(model="gpt2", prompt=["Hello", "Bye"], **options)
    assert [c.index for c in one.choices] == [0, 1, 2, 3]
    assert [c.text for c in one.choices] == [c.text for c in two.choices]
    direct = pipes("gpt2")(
        ["Hello", "Bye"],
        max_new_tokens=6,
        do_sample=True,
        temperature=0.9,
        top_p=0.95,
        seed=7,
        num_return_sequences=2,
        return_full_text=False,
    )
    assert [c.text for c in one.choices] == [r["generated_text"] for rows in direct for r in rows]


def test_completions_stream_server_sent_events(oai, client, pipes):
    prompt = "In a small village"
    expected = pipes("gpt2")(prompt, max_new_tokens=10, do_sample=False, return_full_text=False)[0]["generated_text"]
    chunks = list(oai.completions.create(model="gpt2", prompt=prompt, max_tokens=10, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    if len(expected) > 3:
        stop = expected[2:4]
        cut = oai.completions.create(model="gpt2", prompt=prompt, max_tokens=10, temperature=0, stream=True, stop=stop)
        pieces = list(cut)
        assert "".join(c.choices[0].text for c in pieces) == expected[: expected.find(stop)]
        assert pieces[-1].choices[0].finish_reason == "stop"
    with client.stream(
        "POST", "/v1/completions", json={"model": "gpt2", "prompt": prompt, "max_tokens": 4, "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = raw.split("\n\n")
    assert events[-2] == "data: [DONE]" and events[-1] == ""
    assert all(e.startswith("data: {") for e in events[:-2])


def test_transcriptions_in_every_format_equal_the_pipeline(oai, pipes, wav):
    pipe = pipes("whisper-tiny")
    plain = pipe(str(wav))
    timed = pipe(str(wav), return_timestamps=True)
    with open(wav, "rb") as f:
        answer = oai.audio.transcriptions.create(model="whisper-tiny", file=f)
    assert answer.text == plain["text"]
    with open(wav, "rb") as f:
        text = oai.audio.transcriptions.create(model="whisper-tiny", file=f, response_format="text")
    assert text == plain["text"]
    with open(wav, "rb") as f:
        verbose = oai.audio.transcriptions.create(model="whisper-tiny", file=f, response_format="verbose_json")
    assert verbose.text == timed["text"] and verbose.duration == 1.5
    segments = [(s.start, s.end, s.text) for s in verbose.segments]
    assert len(segments) == len(timed["chunks"])
    for (start, end, text), chunk in zip(segments, timed["chunks"]):
        assert text == chunk["text"] and start == round(chunk["timestamp"][0], 3)
        assert end == round(1.5 if chunk["timestamp"][1] is None else chunk["timestamp"][1], 3)
    with open(wav, "rb") as f:
        subtitles = oai.audio.transcriptions.create(model="whisper-tiny", file=f, response_format="srt")
    assert subtitles.count(" --> ") == len(timed["chunks"])
    with open(wav, "rb") as f:
        web = oai.audio.transcriptions.create(model="whisper-tiny", file=f, response_format="vtt")
    assert web.startswith("WEBVTT\n\n") and web.count(" --> ") == len(timed["chunks"])
    with open(wav, "rb") as f, pytest.raises(openai.UnprocessableEntityError, match="unsupported language 'xx'"):
        oai.audio.transcriptions.create(model="whisper-tiny", file=f, language="xx")
    with open(wav, "rb") as f:
        translated = oai.audio.translations.create(model="whisper-tiny", file=f)
    assert translated.text == pipe(str(wav), generate_kwargs={"task": "translate"})["text"]


def test_transcriptions_prompt_and_temperature(oai, pipes, wav):
    pipe = pipes("whisper-tiny")
    with open(wav, "rb") as f:
        answer = oai.audio.transcriptions.create(model="whisper-tiny", file=f, prompt="hello there", temperature=0)
    assert answer.text == pipe(str(wav), prompt="hello there")["text"]
    with open(wav, "rb") as f, pytest.raises(openai.BadRequestError, match="between 0 and 1"):
        oai.audio.transcriptions.create(model="whisper-tiny", file=f, temperature=1.5)
    with open(wav, "rb") as f, pytest.raises(openai.BadRequestError, match="takes no prompt or temperature"):
        oai.audio.transcriptions.create(model="wav2vec2-ctc", file=f, prompt="hello there")


def test_transcriptions_whisper_words(oai, pipes, wav):
    """timestamp_granularities=["word"] gives Whisper's word timestamps (return_timestamps="word")."""
    pipe = pipes("whisper-tiny")
    with open(wav, "rb") as f:
        verbose = oai.audio.transcriptions.create(
            model="whisper-tiny", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    words = pipe(str(wav), return_timestamps="word")["chunks"]
    assert words and [w.word for w in verbose.words] == [w["text"] for w in words]
    assert [round(w.start, 3) for w in verbose.words] == [round(w["timestamp"][0], 3) for w in words]


def test_transcriptions_ctc_words(oai, pipes, wav):
    pipe = pipes("wav2vec2-ctc")
    with open(wav, "rb") as f:
        answer = oai.audio.transcriptions.create(model="wav2vec2-ctc", file=f)
    assert answer.text == pipe(str(wav))["text"]
    with open(wav, "rb") as f:
        verbose = oai.audio.transcriptions.create(
            model="wav2vec2-ctc", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    words = pipe(str(wav), return_timestamps="word")["chunks"]
    assert [w.word for w in verbose.words] == [w["text"] for w in words]
    with open(wav, "rb") as f, pytest.raises(openai.BadRequestError, match="translation needs a Whisper model"):
        oai.audio.translations.create(model="wav2vec2-ctc", file=f)


# -- the generic route -------------------------------------------------------------------------------------------
def test_pipelines_text_json_equals_the_pipeline(client, pipes):
    texts = ["I love this", "terrible"]
    got = client.post("/v1/pipelines/distilbert-sst2", json={"inputs": texts, "parameters": {"top_k": None}})
    assert got.status_code == 200
    assert close(got.json(), pipes("distilbert-sst2")(texts, top_k=None), 1e-6)
    hidden = client.post("/v1/pipelines/minilm-embeddings", json={"inputs": "short text"})
    assert close(hidden.json(), pipes("minilm-embeddings")("short text"), 1e-5)


def test_pipelines_image_multipart_base64_and_raw(client, pipes, png):
    expected = pipes("vit-base")(str(png))
    data = png.read_bytes()
    multipart = client.post(
        "/v1/pipelines/vit-base", files={"inputs": ("x.png", data, "image/png")}, data={"parameters": '{"top_k": 2}'}
    )
    assert close(multipart.json(), pipes("vit-base")(str(png), top_k=2), 1e-5)
    encoded = client.post("/v1/pipelines/vit-base", json={"inputs": base64.b64encode(data).decode()})
    assert close(encoded.json(), expected, 1e-5)
    raw = client.post("/v1/pipelines/vit-base", content=data, headers={"content-type": "image/png"})
    assert close(raw.json(), expected, 1e-5)


def test_pipelines_audio_raw_body_and_array_dict(client, pipes, wav):
    got = client.post("/v1/pipelines/wav2vec2-ctc", content=wav.read_bytes(), headers={"content-type": "audio/wav"})
    assert got.json() == pipes("wav2vec2-ctc")(str(wav))
    samples = tone(0.8, 8000, 250.0)  # resampled to the model's 16 kHz by the pipeline
    body = {"inputs": {"array": samples.tolist(), "sampling_rate": 8000}, "parameters": {"return_timestamps": "word"}}
    expected = pipes("wav2vec2-ctc")({"array": samples, "sampling_rate": 8000}, return_timestamps="word")
    assert close(client.post("/v1/pipelines/wav2vec2-ctc", json=body).json(), to_json_value(expected), 1e-6)


# -- errors -------------------------------------------------------------------------------------------------------
def test_unknown_and_escaping_model_names_get_404(client, oai):
    for name in ("nope", "not-a-bundle", "%2e%2e", "..%2f..%2fetc", "%2Fetc%2Fpasswd", "vit-base%2F..%2Fgpt2"):
        response = client.post(f"/v1/pipelines/{name}", json={"inputs": "x"})
        assert response.status_code == 404, name
        assert "served models: distilbert-sst2" in response.json()["error"]["message"]
    for name in ("..", "../served", "/etc/passwd", "gpt2/.", "./gpt2", "minilm-embeddings/../gpt2", "", 7):
        response = client.post("/v1/embeddings", json={"model": name, "input": "x"})
        assert response.status_code in (400, 404), name
        assert "served models: distilbert-sst2" in response.json()["error"]["message"] or name in ("", 7)
    with pytest.raises(openai.NotFoundError, match="served models"):
        oai.embeddings.create(model="/etc/passwd", input="x")


def test_bad_requests_name_the_problem(client, oai):
    cases = [
        ("/v1/pipelines/distilbert-sst2", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/v1/pipelines/distilbert-sst2", {"json": {"parameters": {}}}),
        ("/v1/embeddings", {"json": {"model": "minilm-embeddings", "input": [1, 2, 3]}}),
        ("/v1/embeddings", {"json": {"model": "gpt2", "input": "x"}}),
        ("/v1/completions", {"json": {"model": "gpt2", "prompt": "x", "max_tokens": "many"}}),
    ]
    messages = [
        "not valid JSON",
        "missing required field 'inputs'",
        "token arrays",
        "needs a feature-extraction",
        "max_tokens",
    ]
    for (route, kwargs), message in zip(cases, messages):
        response = client.post(route, **kwargs)
        assert response.status_code == 400 and message in response.json()["error"]["message"], response.text
    # the pipeline's own message, as 422
    bad = client.post("/v1/pipelines/distilbert-sst2", json={"inputs": "x", "parameters": {"nonsense": 1}})
    assert bad.status_code == 422 and "does not accept option(s) ['nonsense']" in bad.json()["error"]["message"]
    empty = client.post("/v1/pipelines/distilbert-sst2", json={"inputs": 42})
    assert empty.status_code == 422
    # a string input to an image task is never opened as a path
    path = client.post("/v1/pipelines/vit-base", json={"inputs": str(ROOT / "README.md")})
    assert path.status_code == 422 and "never opens paths" in path.json()["error"]["message"]
    with pytest.raises(openai.UnprocessableEntityError):
        oai.audio.transcriptions.create(model="whisper-tiny", file=("x.wav", b"not audio at all"))
    assert client.get("/v1/nothing-here").status_code == 404
    assert client.post("/v1/completions", json={"model": "gpt2", "prompt": "x", "suffix": "y"}).status_code == 400


def test_request_size_limit_is_413(client):
    big = {"inputs": "x" * 2_100_000}
    response = client.post("/v1/pipelines/distilbert-sst2", json=big)
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(30):
            yield b"x" * 100_000

    streamed = client.post("/v1/pipelines/vit-base", content=chunks(), headers={"content-type": "image/png"})
    assert streamed.status_code == 413


def test_api_key(models_dir):
    with running(create_app(models_dir, api_key="s3cret")) as base:
        assert httpx.get(f"{base}/v1/models").status_code == 401
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = openai.OpenAI(base_url=f"{base}/v1", api_key="s3cret", max_retries=0)
        assert "gpt2" in [m.id for m in good.models.list()]
        assert httpx.get(f"{base}/health").status_code == 200


# -- load ---------------------------------------------------------------------------------------------------------
def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def hammer(base, clients=8, per_client=20):
    """``clients`` threads each sending ``per_client`` classification requests; every response recorded."""
    texts = [f"review number {i} was {'good' if i % 2 else 'bad'}" for i in range(per_client)]

    def one_client(_):
        out = []
        with httpx.Client(base_url=base, timeout=60) as c:
            for text in texts:
                r = c.post("/v1/pipelines/distilbert-sst2", json={"inputs": text})
                out.append((text, r.status_code, r.json(), r.headers.get("retry-after")))
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [row for rows in pool.map(one_client, range(clients)) for row in rows]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
def test_load_nothing_lost_only_503_under_overload_rss_flat(models_dir, pipes):
    classify = pipes("distilbert-sst2")
    # ample queue: every request answered, each equal to the direct call
    with running(create_app(models_dir, limits=Limits(concurrency=2, queue=16))) as base:
        hammer(base, clients=4, per_client=5)  # warm-up
        before = rss_mb()
        rows = hammer(base)
        grown = rss_mb() - before
    assert len(rows) == 160 and all(status == 200 for _, status, _, _ in rows)
    assert all(close(body, classify(text), 1e-6) for text, _, body, _ in rows)
    assert grown < 30, f"resident memory grew {grown:.1f} MB over 160 requests"
    # one running, one queued: the rest are refused with 503 + Retry-After, never another error
    with running(create_app(models_dir, limits=Limits(concurrency=1, queue=1))) as base:
        rows = hammer(base)
    statuses = [status for _, status, _, _ in rows]
    assert len(rows) == 160 and set(statuses) <= {200, 503} and 200 in statuses
    for text, status, body, retry in rows:
        if status == 200:
            assert close(body, classify(text), 1e-6)
        else:
            assert retry == "1" and "busy" in body["error"]["message"]


def test_serve_command_starts_on_loopback(models_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetf", "serve", str(models_dir), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        names = None
        for _ in range(200):
            try:
                names = [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"]]
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert names is not None and "gpt2" in names, proc.stdout.read() if proc.poll() is not None else ""
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    missing = subprocess.run(
        [sys.executable, "-m", "edgetf", "serve", str(models_dir / "absent")], cwd=ROOT, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
