"""OpenAI-compatible routes: /v1/models, /v1/embeddings, /v1/completions (with SSE streaming),
/v1/audio/transcriptions and /v1/audio/translations, over the same pipelines as the generic route."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from typing import Any

from ..audio.io import load_audio
from . import web
from .errors import ApiError
from .formats import (
    TRANSCRIPT_FORMATS,
    StopScanner,
    completion_body,
    completion_choice,
    cut_at_stop,
    embeddings_body,
    transcript_body,
)
from .models import ModelStore, sentence_pooling
from .requests import field, form, integer, json_object, number, upload_bytes


def state(request: web.Request) -> ModelStore:
    return request.app.state.store


def need_task(store: ModelStore, name: str, tasks: tuple[str, ...], route: str) -> None:
    task = store.task(name)
    if task not in tasks:
        raise ApiError(
            400,
            f"{route} needs a {' or '.join(tasks)} model; {name!r} is {task or 'of an unknown task'}",
            param="model",
        )


# -- models ----------------------------------------------------------------------------------------------
def model_card(store: ModelStore, name: str) -> dict[str, Any]:
    folder = store.folder(name)
    return {
        "id": name,
        "object": "model",
        "created": int(folder.stat().st_mtime),
        "owned_by": "edgetf",
        "task": store.task(name),
    }


async def list_models(request: web.Request) -> web.Response:
    store = state(request)
    store.scan()
    return web.JSONResponse({"object": "list", "data": [model_card(store, n) for n in store.names()]})


async def get_model(request: web.Request) -> web.Response:
    return web.JSONResponse(model_card(state(request), request.path_params["model"]))


# -- embeddings ------------------------------------------------------------------------------------------
def text_list(value: Any, name: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(
            400, f"field {name!r} must be a string or a non-empty list of strings (token arrays are not accepted)"
        )
    return texts


async def embeddings(request: web.Request) -> web.Response:
    store = state(request)
    body = await json_object(request)
    name = field(body, "model", str)
    texts = text_list(field(body, "input", (str, list)), "input")
    encoding = field(body, "encoding_format", str, "float")
    if encoding not in ("float", "base64"):
        raise ApiError(400, f"encoding_format must be 'float' or 'base64', got {encoding!r}", param="encoding_format")
    if field(body, "dimensions", int, None) is not None:
        raise ApiError(400, "dimensions is not supported: the model's own size is returned", param="dimensions")
    need_task(store, name, ("feature-extraction",), "/v1/embeddings")
    pooling = sentence_pooling(store.folder(name))

    def work(pipe: Any) -> tuple[list[Any], int]:
        # one text per model call: q8 models quantize activations per call, so a padded batch would make a
        # text's vector depend on the other texts sent with it
        vectors = pipe(texts, pooling=pooling, normalize=True, return_tensors=True)
        tokens = sum(len(pipe.tokenizer.encode(t, truncation=True).ids) for t in texts)
        return vectors, tokens

    vectors, tokens = await store.call(name, work)
    return web.JSONResponse(embeddings_body(vectors, name, encoding, tokens))


# -- completions -----------------------------------------------------------------------------------------
UNSUPPORTED_COMPLETION_FIELDS = ("suffix", "logprobs", "logit_bias")


def completion_options(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(text-generation options, max_tokens) from an OpenAI completions request."""
    for key in UNSUPPORTED_COMPLETION_FIELDS:
        if body.get(key) not in (None, {}, 0):
            raise ApiError(400, f"{key} is not supported by edgetf's /v1/completions", param=key)
    for key in ("presence_penalty", "frequency_penalty"):
        if number(body, key, 0.0, -2.0, 2.0) != 0:
            raise ApiError(400, f"{key} is not supported (use 0); repetition_penalty is", param=key)
    max_tokens = integer(body, "max_tokens", 16, 1, 1_000_000)
    temperature = number(body, "temperature", 1.0, 0.0, 2.0)
    n = integer(body, "n", 1, 1, 16)
    best_of = integer(body, "best_of", None, 1, 16)
    if best_of not in (None, n):
        raise ApiError(400, "best_of other than n is not supported", param="best_of")
    options: dict[str, Any] = {"max_new_tokens": max_tokens, "return_full_text": False}
    if temperature == 0:
        options["do_sample"] = False
    else:
        options.update(do_sample=True, temperature=temperature, top_p=number(body, "top_p", 1.0, 0.0, 1.0))
    if n > 1:
        options["num_return_sequences"] = n
    seed = integer(body, "seed", None, 0, 2**63 - 1)
    if seed is not None:
        options["seed"] = seed
    for key in ("top_k", "repetition_penalty", "min_p"):  # extensions (as vLLM takes them)
        if body.get(key) is not None:
            options[key] = field(body, key, (int, float))
    return options, max_tokens


def stop_strings(body: dict[str, Any]) -> list[str]:
    stop = field(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "stop must be a non-empty string or a list of up to 4 non-empty strings", param="stop")
    return stops


def finish_reason(pipe: Any, text: str, max_tokens: int, stopped: bool) -> str:
    """ "stop" (a stop string or the end of text) or "length" (max_tokens reached, counted by re-tokenizing)."""
    if stopped:
        return "stop"
    return "length" if token_count(pipe, text) >= max_tokens else "stop"


def token_count(pipe: Any, text: str) -> int:
    return len(pipe.tokenizer.encode(text, add_special_tokens=False).ids) if text else 0


async def completions(request: web.Request) -> web.Response:
    store = state(request)
    body = await json_object(request)
    name = field(body, "model", str)
    prompts = text_list(field(body, "prompt", (str, list)), "prompt")
    options, max_tokens = completion_options(body)
    stops = stop_strings(body)
    echo = bool(field(body, "echo", bool, False))
    stream = bool(field(body, "stream", bool, False))
    need_task(store, name, ("text-generation",), "/v1/completions")
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if stream:
        if "num_return_sequences" in options:
            raise ApiError(400, "stream=true takes n=1", param="n")
        return await stream_completions(store, name, prompts, options, stops, echo, ident, created)

    def work(pipe: Any) -> dict[str, Any]:
        outputs = pipe(prompts, **options)
        choices, generated = [], 0
        for prompt, records in zip(prompts, outputs):
            for record in records:
                text, stopped = cut_at_stop(record["generated_text"], stops)
                generated += token_count(pipe, text)
                reason = finish_reason(pipe, text, max_tokens, stopped)
                choices.append(completion_choice(len(choices), prompt + text if echo else text, reason))
        prompt_tokens = sum(token_count(pipe, p) for p in prompts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated,
        }
        return completion_body(ident, created, name, choices, usage)

    return web.JSONResponse(await store.call(name, work))


async def stream_completions(
    store: ModelStore,
    name: str,
    prompts: list[str],
    options: dict[str, Any],
    stops: list[str],
    echo: bool,
    ident: str,
    created: int,
) -> web.Response:
    """Server-sent events: one ``data: {...}`` chunk per piece of text, a last chunk per prompt with its
    finish_reason, then ``data: [DONE]``. Errors before the first piece are a plain HTTP error."""
    gate = store.gate(name)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
    cancel = threading.Event()
    stream_options = {k: v for k, v in options.items() if k != "return_full_text"}

    def put(kind: str, index: int, value: Any) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, index, value))

    def generate(pipe: Any) -> None:
        for index, prompt in enumerate(prompts):
            scanner, text = StopScanner(stops), ""
            if echo:
                put("text", index, prompt)
            with closing(pipe.stream(prompt, **stream_options)) as pieces:
                for piece in pieces:
                    safe = scanner.push(piece)
                    text += safe
                    if safe:
                        put("text", index, safe)
                    if scanner.stopped or cancel.is_set():
                        break
            tail = scanner.flush()
            if tail:
                text += tail
                put("text", index, tail)
            put("end", index, finish_reason(pipe, text, options["max_new_tokens"], scanner.stopped))

    def work() -> None:
        try:
            store.guarded(name, generate)
            put("done", 0, None)
        except Exception as exc:  # handed to the event stream
            put("error", 0, exc)

    gate.admit()
    gate.submit(work)
    deadline = loop.time() + gate.limits.timeout_s

    async def next_event() -> tuple[str, int, Any]:
        try:
            return await asyncio.wait_for(events.get(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            cancel.set()
            return "error", 0, ApiError(504, f"model {name!r} did not finish within {gate.limits.timeout_s:g} s")

    first = await next_event()
    if first[0] == "error":
        cancel.set()
        error = first[2]
        raise error if isinstance(error, ApiError) else ApiError(500, f"{type(error).__name__}: {error}")

    def chunk(index: int, text: str, reason: str | None) -> str:
        payload = completion_body(ident, created, name, [completion_choice(index, text, reason)], None)
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def sse() -> AsyncIterator[str]:
        event = first
        try:
            while True:
                kind, index, value = event
                if kind == "text":
                    yield chunk(index, value, None)
                elif kind == "end":
                    yield chunk(index, "", value)
                elif kind == "error":
                    error = value if isinstance(value, ApiError) else ApiError(500, f"{type(value).__name__}: {value}")
                    yield f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n"
                    break
                else:
                    break
                event = await next_event()
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()

    return web.StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# -- audio -----------------------------------------------------------------------------------------------
async def transcriptions(request: web.Request) -> web.Response:
    return await audio_route(request, translate=False)


async def translations(request: web.Request) -> web.Response:
    return await audio_route(request, translate=True)


async def audio_route(request: web.Request, *, translate: bool) -> web.Response:
    store = state(request)
    fields = await form(request, request.app.state.max_body)
    name = field(fields, "model", str)
    data = await upload_bytes(fields.get("file"), "file")
    response_format = field(fields, "response_format", str, "json")
    if response_format not in TRANSCRIPT_FORMATS:
        raise ApiError(
            400,
            f"response_format must be one of {TRANSCRIPT_FORMATS}, got {response_format!r}",
            param="response_format",
        )
    language = field(fields, "language", str, None) or None
    prompt = field(fields, "prompt", str, "")  # Whisper's initial prompt (transformers' prompt_ids of the text)
    temperature = number(fields, "temperature", 0.0, 0.0, 1.0)  # > 0: sampling at that temperature
    granularities = fields.getlist("timestamp_granularities[]") + fields.getlist("timestamp_granularities")
    if not set(granularities) <= {"segment", "word"}:
        raise ApiError(400, f"timestamp_granularities takes 'segment' and 'word', got {granularities}")
    words = "word" in granularities
    need_task(store, name, ("automatic-speech-recognition",), request.url.path)

    def work(pipe: Any) -> tuple[Any, str]:
        options: dict[str, Any] = {}
        generate: dict[str, Any] = {}
        if pipe.is_whisper:
            if translate:
                generate["task"] = "translate"
            if language:
                generate["language"] = language
            if prompt:
                generate["prompt"] = prompt
            if temperature:
                generate["temperature"] = temperature
        elif translate:
            raise ApiError(400, f"{name!r} is a CTC model: translation needs a Whisper model", param="model")
        elif language:
            raise ApiError(400, f"{name!r} is a CTC model: it takes no language", param="language")
        elif prompt or temperature:
            raise ApiError(400, f"{name!r} is a CTC model: it takes no prompt or temperature", param="prompt")
        if generate:
            options["generate_kwargs"] = generate
        if response_format in ("srt", "vtt", "verbose_json"):
            options["return_timestamps"] = (
                "word" if words and response_format == "verbose_json" else pipe.timestamps_option()
            )
        audio = load_audio(data, pipe.sampling_rate)
        output = pipe(audio.samples, **options)
        task = "translate" if translate else "transcribe"
        return transcript_body(
            output, response_format, task=task, language=language, duration=audio.seconds, words=words
        )

    body, media_type = await store.call(name, work)
    if media_type == "application/json":
        return web.JSONResponse(body)
    return web.PlainTextResponse(body, media_type=media_type)
