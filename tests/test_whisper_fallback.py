"""Robust long-form Whisper (temperature fallback, thresholds, no-speech skipping, prompts) vs transformers 4.57.

Sampled text cannot match (numpy's random generator is not torch's), so these tests compare:

* the decision functions with transformers' own (``_retrieve_compression_ratio``, ``_retrieve_avg_logprobs``,
  ``_need_fallback``, ``_prepare_decoder_input_ids``, ``get_prompt_ids``) on the same inputs;
* the decision trace of whole calls (per window and temperature: compression ratio, average log-probability,
  no-speech probability, fallback taken, window skipped; the decoder input of each window), recorded from
  both sides, where the path up to the compared point is deterministic;
* the full output where the accepted temperature is 0 (fallback that never fires, prompts with greedy and
  beam search, conditioning on previous text, windows dropped as no speech).

Thresholds are set far from the measured values (the tests check the margin), so near-ties of random weights
cannot flip a decision.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import edgetf
from edgetf.audio.samples import parity_signals, speech_like
from edgetf.errors import InvalidInputError
from edgetf.whisper.fallback import (
    RobustOptions,
    avg_logprob,
    compression_ratio,
    decoder_prompt,
    judge,
)
from edgetf.whisper.seek import WhisperModel

SR = 16000
ASR = "automatic-speech-recognition"
TOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def multi(tiny):
    return tiny.get("whisper-tiny")


@pytest.fixture(scope="module")
def pipe(multi):
    return edgetf.pipeline(ASR, multi.bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ref(multi, reference):
    return reference(ASR, multi)


@pytest.fixture(scope="module")
def clip40() -> np.ndarray:
    return speech_like(40.0, SR, 8).astype(np.float32)


@pytest.fixture(scope="module")
def clip70() -> np.ndarray:
    return speech_like(70.0, SR, 7).astype(np.float32)


# ------------------------------------------------------------------------------------------ tracing both sides
class _RefTrace:
    def __init__(self, monkeypatch):
        import torch
        from transformers import WhisperForConditionalGeneration as W
        from transformers.generation.logits_process import WhisperNoSpeechDetection
        from transformers.models.whisper.generation_whisper import _get_attr_from_logit_processors

        self.attempts: list[tuple] = []
        self.decoder_ids: list[list[int]] = []
        need, prepare = W._need_fallback, W._prepare_decoder_input_ids

        def traced_need(model, seq, outputs, index, processors, config, vocab_size, temperature):
            ratio = logprob = no_speech = None
            if config.compression_ratio_threshold is not None:
                ratio = model._retrieve_compression_ratio(seq, vocab_size)
            if config.logprob_threshold is not None:
                logprob = float(model._retrieve_avg_logprobs(outputs[index]["scores"], seq, temperature))
            if config.no_speech_threshold is not None:
                probs = _get_attr_from_logit_processors(processors, WhisperNoSpeechDetection, "no_speech_prob")
                no_speech = float(probs[index])
            result = need(model, seq, outputs, index, processors, config, vocab_size, temperature)
            self.attempts.append((temperature, ratio, logprob, no_speech, bool(result[0]), bool(result[1])))
            return result

        def traced_prepare(*args, **kwargs):
            ids, rest = prepare(*args, **kwargs)
            self.decoder_ids.append(ids[0].tolist())
            return ids, rest

        monkeypatch.setattr(W, "_need_fallback", traced_need)
        monkeypatch.setattr(W, "_prepare_decoder_input_ids", staticmethod(traced_prepare))
        self.torch = torch


def _edgetf_windows(monkeypatch) -> list:
    seen: list = []
    original = WhisperModel.windows

    def spy(self, *args, **kwargs):
        for window in original(self, *args, **kwargs):
            seen.append(window)
            yield window

    monkeypatch.setattr(WhisperModel, "windows", spy)
    return seen


def _attempts(windows) -> list[tuple]:
    return [
        (a.temperature, a.compression_ratio, a.avg_logprob, a.no_speech_prob, a.needs_fallback, a.skip)
        for w in windows
        for a in w.attempts
    ]


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


def _same_attempt(got: tuple, expected: tuple) -> bool:
    same_values = all(_close(x, y) for x, y in zip(got[1:4], expected[1:4]))
    return got[0] == expected[0] and same_values and got[4:] == expected[4:]


def _margin(trace: list[tuple], thresholds: dict[str, float | None]) -> None:
    """Every compared value is clearly on one side of its threshold (no near-tie decides a test)."""
    for _, ratio, logprob, no_speech, *_ in trace:
        for value, name in ((ratio, "compression_ratio"), (logprob, "logprob"), (no_speech, "no_speech")):
            limit = thresholds.get(name)
            if value is not None and limit is not None:  # no-speech probabilities are small: relative
                gap = abs(math.log(value / limit)) if name == "no_speech" else abs(value - limit)
                assert gap > 1e-2, (name, value, limit)


def _run_both(pipe, ref, monkeypatch, audio, **options):
    """(edgetf output, reference output, edgetf windows, reference trace)."""
    trace = _RefTrace(monkeypatch)
    ref_options = dict(options)
    if "prompt_ids" in ref_options:
        ref_options["prompt_ids"] = trace.torch.tensor(ref_options["prompt_ids"])
    expected = ref(audio.copy(), **ref_options)
    windows = _edgetf_windows(monkeypatch)
    got = pipe(audio, **options)
    return got, expected, windows, trace


# ------------------------------------------------------------------------------------------ decision functions
def test_compression_ratio_matches_transformers() -> None:
    import torch
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin as M

    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 51865, n) for n in (1, 5, 40, 200)] + [np.tile([7, 300, 300, 50257], 30)]
    for vocab in (2208, 51865, 51866):
        for tokens in cases:
            expected = M._retrieve_compression_ratio(torch.tensor(tokens % vocab), vocab)
            assert compression_ratio(tokens % vocab, vocab) == expected


def test_avg_logprob_matches_transformers() -> None:
    import torch
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin as M

    rng = np.random.default_rng(1)
    for steps, n_tokens in ((6, 6), (8, 5), (4, 7)):  # as many scores as tokens, more, fewer
        scores = rng.normal(0, 3, (steps, 50)).astype(np.float32)
        scores[:, 40:] = -np.inf  # suppressed ids
        tokens = rng.integers(0, 40, n_tokens)
        for temperature in (0.0, 0.4, 1.0):
            expected = M._retrieve_avg_logprobs([torch.tensor(s) for s in scores], torch.tensor(tokens), temperature)
            got = avg_logprob(list(scores), tokens, temperature)
            assert math.isclose(got, float(expected), rel_tol=1e-6, abs_tol=1e-6)
    # transformers raises TypeError for temperature None (no temperature given); edgetf takes it as 0
    assert avg_logprob(list(scores), tokens, None) == avg_logprob(list(scores), tokens, 0.0)


def test_need_fallback_decisions_match_transformers() -> None:
    import torch
    from transformers.generation.logits_process import WhisperNoSpeechDetection
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin as M

    rng = np.random.default_rng(2)
    scores = rng.normal(0, 2, (10, 30)).astype(np.float32)
    tokens = np.argmax(scores, axis=-1)
    ratio = compression_ratio(tokens, 30)
    logprob = avg_logprob(list(scores), tokens, 0.0)
    detector = WhisperNoSpeechDetection(no_speech_token=3, begin_index=1)
    outputs = [{"scores": [torch.tensor(s) for s in scores]}]
    checked = set()
    for crt in (None, ratio - 0.5, ratio + 0.5):
        for lpt in (None, logprob - 0.5, logprob + 0.5):
            for nst, no_speech in ((None, None), (0.3, 0.9), (0.3, 0.1)):
                if nst is not None and lpt is None:
                    continue  # transformers fails (UnboundLocalError); edgetf refuses the options
                detector._no_speech_prob = [no_speech]
                config = SimpleNamespace(
                    compression_ratio_threshold=crt, logprob_threshold=lpt, no_speech_threshold=nst
                )
                expected = M._need_fallback(M, torch.tensor(tokens), outputs, 0, [detector], config, 30, 0.0)
                options = RobustOptions(compression_ratio_threshold=crt, logprob_threshold=lpt, no_speech_threshold=nst)
                got = judge(tokens, list(scores), 0.0, no_speech, options, 30)
                assert (got.needs_fallback, got.skip) == tuple(expected), (crt, lpt, nst, no_speech)
                checked.add(tuple(expected))
    assert checked == {(False, False), (True, False), (False, True)}


def test_decoder_prompt_matches_transformers() -> None:
    import torch
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin as M

    tb, prev_sot, pad = 706 + 1, 704, 600
    init = [601, 615, 702]
    prompt = (704, 30, 31, 32)
    long_text = np.arange(40, 400)  # more than max_target_positions // 2 - 1 = 223 tokens
    histories = {
        "none": [],
        "double-timestamp ending": [np.array([tb, 50, 51, tb + 10, tb + 10]), np.array([tb + 10, 52, tb + 20])],
        "long": [long_text],
    }
    for condition_type, prompt_ids in (("first-segment", None), ("first-segment", prompt), ("all-segments", prompt)):
        for condition in (False, True):
            if condition_type == "all-segments" and not condition:
                continue
            options = RobustOptions(
                condition_on_prev_tokens=condition,
                prompt_ids=prompt_ids,
                prompt_condition_type=condition_type,
                prev_sot=prev_sot,
            )
            for name, history in histories.items():
                segments = [{"tokens": torch.tensor(s)} for s in (options.first_history() + history)]
                config = SimpleNamespace(
                    prev_sot_token_id=prev_sot,
                    prompt_condition_type=condition_type,
                    cache_implementation=None,
                    pad_token_id=pad,
                )
                expected, _ = M._prepare_decoder_input_ids(
                    cur_bsz=1,
                    init_tokens=torch.tensor([init]),
                    current_segments=[segments],
                    batch_idx_map=[0],
                    do_condition_on_prev_tokens=[condition],
                    prompt_ids=None if prompt_ids is None else torch.tensor(prompt_ids),
                    generation_config=config,
                    config=SimpleNamespace(max_target_positions=448),
                    device="cpu",
                    suppress_tokens=None,
                    timestamp_begin=tb,
                    kwargs={},
                )
                got = decoder_prompt(init, options.first_history() + history, condition, options, tb, 448)
                assert got == expected[0].tolist(), (condition_type, prompt_ids, condition, name)


def test_prompt_text_ids_match_get_prompt_ids(pipe, multi) -> None:
    from transformers import WhisperTokenizerFast

    reference = WhisperTokenizerFast.from_pretrained(str(multi.checkpoint))
    for text in ("hello world", "  Mister Quilter, the apostle ", "ça va? 12"):
        assert pipe.get_prompt_ids(text) == reference.get_prompt_ids(text).tolist()
    with pytest.raises(InvalidInputError, match="special token"):
        pipe.get_prompt_ids("hi <|endoftext|>")


# ------------------------------------------------------------------------------------------ whole calls
@pytest.mark.parametrize("num_beams", [1, 5])
def test_fallback_not_needed_matches_reference(pipe, ref, monkeypatch, clip40, num_beams) -> None:
    # temperature fallback configured but never triggered: deterministic, so the output must be identical,
    # and the values each decision rests on (ratio, average log-probability) must agree
    options = {
        "return_timestamps": True,
        "temperature": (0.0, 0.4, 0.8),
        "compression_ratio_threshold": 50.0,
        "logprob_threshold": -50.0,
        "num_beams": num_beams,
    }
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, clip40, **options)
    assert got == expected
    attempts = _attempts(windows)
    _margin(trace.attempts, {"compression_ratio": 50.0, "logprob": -50.0})
    assert len(windows) >= 2 and len(attempts) == len(trace.attempts) == len(windows)
    assert all(_same_attempt(g, e) for g, e in zip(attempts, trace.attempts)), (attempts, trace.attempts)


@pytest.mark.parametrize(
    "thresholds",
    [{"compression_ratio_threshold": 0.01}, {"logprob_threshold": 1.0}],  # always fire
)
def test_fallback_taken_trace_matches_reference(pipe, ref, monkeypatch, clip40, thresholds) -> None:
    # every temperature is tried on the first window; the greedy attempt's numbers match, the sampled
    # attempts' text cannot (another random generator), but their decisions are forced the same way
    temperatures = (0.0, 0.5, 1.0)
    options = {"return_timestamps": True, "temperature": temperatures, "max_new_tokens": 20, **thresholds}
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, clip40, **options)
    first = _attempts(windows[:1])
    assert [a[0] for a in first] == [a[0] for a in trace.attempts[:3]] == list(temperatures)
    assert _same_attempt(first[0], trace.attempts[0])
    assert [a[4:] for a in first] == [a[4:] for a in trace.attempts[:3]] == [(True, False)] * 3
    # the last temperature's result is kept: sampled, so only its form is compared
    assert isinstance(got["text"], str) and sorted(got) == sorted(expected)


@pytest.mark.parametrize("hot,condition", [(0.5, False), (0.4, True), (0.5, True)])
def test_fallback_to_sampling_with_top_k_1_matches_reference(pipe, ref, monkeypatch, clip40, hot, condition) -> None:
    # top_k=1 makes sampling deterministic (one token left), so the whole fallback path can be compared:
    # every window fails both attempts, keeps the sampled one, and after the first sampled attempt beam
    # search stays off (transformers sets num_beams=1 for the rest of the call): later greedy attempts;
    # the previous text conditions the next window only when the kept temperature is below 0.5
    options = {
        "return_timestamps": True,
        "condition_on_prev_tokens": condition,
        "temperature": (0.0, hot),
        "top_k": 1,
        "compression_ratio_threshold": 0.01,
        "logprob_threshold": 1.0,
        "num_beams": 5,
        "max_new_tokens": 20,
    }
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, clip40, **options)
    assert got == expected
    attempts = _attempts(windows)
    assert len(windows) >= 2 and len(attempts) == len(trace.attempts) == 2 * len(windows)
    assert all(_same_attempt(g, e) for g, e in zip(attempts, trace.attempts)), (attempts, trace.attempts)
    assert [a[0] for a in attempts] == [0.0, hot] * len(windows) and all(a[4] for a in attempts)
    assert [list(w.decoder_ids) for w in windows] == trace.decoder_ids
    assert (len(windows[1].decoder_ids) > len(windows[0].decoder_ids)) == (condition and hot < 0.5)


def test_no_speech_threshold_drops_windows_as_reference(pipe, ref, monkeypatch) -> None:
    audio = np.concatenate([np.zeros(30 * SR, np.float32), speech_like(12.0, SR, 8).astype(np.float32)])
    base = {"return_timestamps": True, "temperature": 0.0, "logprob_threshold": 1.0}  # every window "unlikely"
    # a no-speech probability above -1 always: every window is skipped, on both sides
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, audio, no_speech_threshold=-1.0, **base)
    assert got == expected and got["text"] == "" and all(w.skipped for w in windows)
    assert [w.end - w.start for w in windows] == [3000, 1200]
    assert all(_same_attempt(g, e) for g, e in zip(_attempts(windows), trace.attempts))
    # a threshold between the two windows' probabilities (random weights: they differ by some percent)
    first, second = (a[3] for a in trace.attempts)
    assert abs(math.log(first / second)) > 0.05, (first, second)
    threshold = math.sqrt(first * second)
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, audio, no_speech_threshold=threshold, **base)
    _margin(trace.attempts, {"no_speech": threshold})
    assert got == expected
    assert [w.skipped for w in windows] == [a[5] for a in trace.attempts] == [first > threshold, second > threshold]


@pytest.fixture(scope="module")
def en_pipe(tiny):
    return edgetf.pipeline(ASR, tiny.get("whisper-tiny-en").bundle, dtype="fp32")


@pytest.fixture(scope="module")
def en_ref(tiny, reference):
    return reference(ASR, tiny.get("whisper-tiny-en"))


@pytest.mark.parametrize("num_beams", [1, 5])
def test_no_speech_of_one_token_prompt_as_reference(en_pipe, en_ref, monkeypatch, clip40, num_beams) -> None:
    # English-only with timestamps: the prompt is <|startoftranscript|> alone, and transformers reads the
    # probability from the first step's scores after the suppress rules (the token is suppressed by default:
    # 0); here with a suppress list that leaves it, greedy (softmax) and beam search (exp of log-probabilities)
    options = {"return_timestamps": True, "temperature": 0.0, "logprob_threshold": 1.0, "num_beams": num_beams}
    for suppress, threshold in (([1, 2, 7], 2.0), (None, -1.0)):
        extra = {"no_speech_threshold": threshold} | ({"suppress_tokens": suppress} if suppress else {})
        got, expected, windows, trace = _run_both(en_pipe, en_ref, monkeypatch, clip40, **options, **extra)
        assert got == expected
        assert len(_attempts(windows)) == len(trace.attempts) == len(windows) >= 2
        assert all(_same_attempt(g, e) for g, e in zip(_attempts(windows), trace.attempts))
        assert [len(w.decoder_ids) for w in windows] == [1] * len(windows)
        assert (trace.attempts[0][3] > 0) == (suppress is not None)
        assert all(w.skipped for w in windows) == (threshold < 0)


def test_short_form_no_speech_keeps_or_drops_as_reference(pipe, ref, monkeypatch) -> None:
    audio = np.zeros(SR * 3, np.float32)
    for threshold in (-1.0, 2.0):
        got, expected, windows, _ = _run_both(
            pipe, ref, monkeypatch, audio, temperature=0.0, logprob_threshold=1.0, no_speech_threshold=threshold
        )
        assert got == expected
        assert windows[0].skipped == (threshold < 0)


@pytest.mark.parametrize("num_beams", [1, 5])
def test_condition_on_prev_tokens_matches_reference(pipe, ref, monkeypatch, clip70, num_beams) -> None:
    options = {
        "return_timestamps": True,
        "condition_on_prev_tokens": True,
        "temperature": 0.0,
        "max_new_tokens": 24,
        "num_beams": num_beams,
    }
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, clip70, **options)
    assert got == expected
    assert [list(w.decoder_ids) for w in windows] == trace.decoder_ids
    assert len(windows) >= 3 and windows[1].decoder_ids[0] == pipe.tokens.sot_prev  # conditioned after window 1


def test_previous_text_beyond_max_length_fails_as_reference(pipe, ref, clip70) -> None:
    # the tiny model's generation_config max_length is 40: previous text soon fills it (transformers raises)
    options = {"return_timestamps": True, "condition_on_prev_tokens": True, "temperature": 0.0}
    with pytest.raises(ValueError, match="max_length"):
        ref(clip70.copy(), **options)
    with pytest.raises(InvalidInputError, match="max_length is 40"):
        pipe(clip70, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"num_beams": 1},
        {"num_beams": 5},
        {"num_beams": 1, "return_timestamps": True},
        {"num_beams": 1, "return_timestamps": True, "condition_on_prev_tokens": True, "temperature": 0.0},
        {
            "num_beams": 1,
            "return_timestamps": True,
            "condition_on_prev_tokens": True,
            "temperature": 0.0,
            "prompt_condition_type": "all-segments",
        },
    ],
)
def test_prompt_ids_match_reference(pipe, ref, monkeypatch, clip40, options) -> None:
    prompt = pipe.get_prompt_ids("hello small device")
    audio = clip40 if options.get("return_timestamps") else parity_signals()["speechlike"]
    got, expected, windows, trace = _run_both(
        pipe, ref, monkeypatch, audio, prompt_ids=np.asarray(prompt), max_new_tokens=20, **options
    )
    assert got == expected
    assert [list(w.decoder_ids) for w in windows] == trace.decoder_ids
    assert list(windows[0].decoder_ids[: len(prompt)]) == prompt  # the prompt leads the first window ...
    ids = pipe.token_ids(audio, prompt_ids=prompt, max_new_tokens=20, **options)[0].tolist()
    assert pipe.tokens.sot_prev not in ids and ids[: len(prompt) - 1] != prompt[1:]  # ... and is not output
    # the text prompt is the same prompt
    assert pipe(audio, prompt="hello small device", max_new_tokens=20, **options) == got


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 2, "temperature": (0.0, 0.5), "compression_ratio_threshold": 50.0, "logprob_threshold": -50.0},
        {"batch_size": 2, "return_timestamps": True, "prompt": "hello small device"},
        {"return_timestamps": True, "prompt": "hello small device"},
        {"temperature": 0.0, "logprob_threshold": 1.0, "no_speech_threshold": -1.0},
    ],
)
def test_chunked_with_robust_options_matches_reference(pipe, ref, monkeypatch, options) -> None:
    # chunk_length_s: each chunk is one short-form window with the same decisions (batched in transformers)
    audio = speech_like(35.0, SR, 7).astype(np.float32)
    options = dict(options, chunk_length_s=10, max_new_tokens=15)
    if "prompt" in options:
        options["prompt_ids"] = pipe.get_prompt_ids(options.pop("prompt"))
    got, expected, windows, trace = _run_both(pipe, ref, monkeypatch, audio, **options)
    assert got == expected
    if options.get("batch_size", 1) == 1:  # transformers decodes a batch's chunks in one loop: traced as one
        assert len(windows) == len(trace.decoder_ids) >= 4
        assert [list(w.decoder_ids) for w in windows] == trace.decoder_ids


def test_do_sample_alone_decodes_as_reference(pipe, ref) -> None:
    # transformers' Whisper samples only at a temperature > 0: do_sample=True alone keeps beam search
    audio = parity_signals()["speechlike"]
    assert pipe(audio, do_sample=True, top_k=5) == ref(audio.copy(), do_sample=True, top_k=5) == pipe(audio)


def test_sampling_follows_seed(pipe) -> None:
    audio = parity_signals()["speechlike"]
    options = {"temperature": 0.9, "max_new_tokens": 15}
    first = pipe(audio, seed=3, **options)
    assert pipe(audio, seed=3, **options) == first
    # temperature 0 is the plain decoding (beam search stays on: only sampling turns it off)
    assert pipe(audio, temperature=0.0, max_new_tokens=15) == pipe(audio, max_new_tokens=15)
    assert pipe(audio, temperature=(0.0, 0.5), max_new_tokens=15) == pipe(audio, max_new_tokens=15)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"temperature": -0.1}, "temperature must be"),
        ({"temperature": ()}, "temperature must be"),
        ({"temperature": "hot"}, "temperature must be"),
        ({"no_speech_threshold": 0.6}, "needs logprob_threshold"),
        ({"compression_ratio_threshold": "2.4"}, "compression_ratio_threshold must be a number"),
        ({"prompt_condition_type": "all-segments"}, "needs condition_on_prev_tokens"),
        ({"prompt_condition_type": "every"}, "prompt_condition_type"),
        ({"condition_on_prev_tokens": "yes"}, "True or False"),
        ({"prompt": "a", "prompt_ids": [1, 2]}, "give one of"),
        ({"prompt": 5}, "prompt must be a str"),
        ({"prompt_ids": [[1, 2]]}, "prompt_ids must be"),
        ({"seed": "x"}, "seed must be"),
    ],
)
def test_bad_robust_options(pipe, options, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        pipe(parity_signals()["tone"], **options)


def test_ctc_models_refuse_robust_options(tiny) -> None:
    ctc = edgetf.pipeline(ASR, tiny.get("wav2vec2-ctc").bundle)
    for options in ({"temperature": 0.2}, {"prompt": "hello"}, {"no_speech_threshold": 0.6}):
        with pytest.raises(InvalidInputError, match="only apply to Whisper"):
            ctc(parity_signals()["tone"], **options)
