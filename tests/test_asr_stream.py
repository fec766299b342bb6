"""Progress, cancellation, pipe.stream(), live mode and `run --format` for automatic-speech-recognition.

Random-weight models say nonsense, deterministically: streamed segments must equal the plain call's chunks
exactly, and live mode is checked for its invariants (and, with a prefix-stable stand-in model, for the
transcript it converges to).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

import edgetf
from edgetf.__main__ import main
from edgetf.audio.samples import speech_like
from edgetf.errors import Cancelled, InvalidInputError
from edgetf.pipelines.live_asr import LiveTranscriber, file_blocks

SR = 16000
ASR = "automatic-speech-recognition"


@pytest.fixture(scope="module")
def whisper(tiny):
    return edgetf.pipeline(ASR, tiny.get("whisper-tiny").bundle, dtype="fp32")


@pytest.fixture(scope="module")
def ctc(tiny):
    return edgetf.pipeline(ASR, tiny.get("wav2vec2-ctc").bundle, dtype="fp32")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speech_like(65.0, SR, 8).astype(np.float32)


# ------------------------------------------------------------------------------------------ progress, cancel
def check_fractions(fractions: list[float], at_least: int) -> None:
    assert len(fractions) >= at_least
    assert all(0 < f <= 1 for f in fractions)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"return_timestamps": True},  # long-form: one report per 30-s window
        {"chunk_length_s": 10, "max_new_tokens": 10, "num_beams": 1},  # one per chunk
    ],
)
def test_whisper_progress_per_window_or_chunk(whisper, clip, options) -> None:
    audio = clip if "chunk_length_s" not in options else clip[: 30 * SR]
    fractions: list[float] = []
    got = whisper(audio, progress=fractions.append, **options)
    check_fractions(fractions, 3)
    assert got == whisper(audio, **options)


def test_ctc_progress_and_list_inputs(ctc, clip) -> None:
    fractions: list[float] = []
    ctc(clip, chunk_length_s=10, progress=fractions.append)
    check_fractions(fractions, 7)
    fractions.clear()
    ctc([clip[: 20 * SR], clip[: 30 * SR]], chunk_length_s=10, progress=fractions.append)
    check_fractions(fractions, 6)  # over both inputs: never back to 0
    assert fractions[len(fractions) // 2 - 1] <= 0.5 + 1e-9


def test_cancel_event_and_callback_stop_between_windows(whisper, ctc, clip) -> None:
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled, match="cancel event"):
        whisper(clip, return_timestamps=True, cancel=event)
    seen: list[float] = []

    def stop_after_first(fraction: float) -> bool:
        seen.append(fraction)
        return False

    with pytest.raises(Cancelled, match="returned False"):
        ctc(clip, chunk_length_s=10, progress=stop_after_first)
    assert len(seen) == 1 and seen[0] < 0.2  # stopped after the first chunk, not at the end
    with pytest.raises(Cancelled):
        list(whisper.stream(clip, cancel=event))


@pytest.mark.parametrize(("options", "match"), [({"progress": 3}, "callable"), ({"cancel": True}, "threading.Event")])
def test_bad_progress_options(ctc, clip, options, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        ctc(clip[:SR], **options)


# ------------------------------------------------------------------------------------------ stream
@pytest.mark.parametrize(
    ("options", "early"),
    [
        ({}, True),  # long-form, 3 windows
        ({"chunk_length_s": 10, "max_new_tokens": 20, "num_beams": 1}, True),
        # this nonsense never closes a segment before the last chunk: all come at the end
        (
            {
                "chunk_length_s": 12,
                "stride_length_s": [2, 3],
                "max_new_tokens": 10,
                "return_language": True,
                "num_beams": 1,
            },
            False,
        ),
    ],
)
def test_whisper_stream_equals_the_call(whisper, clip, options, early) -> None:
    clip = clip if "chunk_length_s" not in options else clip[: 35 * SR]
    expected = whisper(clip, return_timestamps=True, **options)
    events: list[str] = []
    streamed = []
    for segment in whisper.stream(clip, progress=lambda f: events.append("progress"), **options):
        streamed.append(segment)
        events.append("segment")
    assert streamed == expected["chunks"]
    assert "".join(s["text"] for s in streamed) == expected["text"]
    if early:  # the first segments come out before the last window or chunk is decoded
        assert events.index("segment") < len(events) - 1 - events[::-1].index("progress")


@pytest.mark.parametrize("kind", ["word", "char"])
def test_ctc_stream_equals_the_call(ctc, clip, kind) -> None:
    for options in ({"chunk_length_s": 10}, {"chunk_length_s": 8, "stride_length_s": (2, 1), "batch_size": 3}):
        expected = ctc(clip, return_timestamps=kind, **options)
        assert list(ctc.stream(clip, return_timestamps=kind, **options)) == expected["chunks"]
    assert list(ctc.stream(clip[: 5 * SR])) == ctc(clip[: 5 * SR], return_timestamps="word")["chunks"]


def test_stream_refuses_a_list(ctc, clip) -> None:
    with pytest.raises(InvalidInputError, match="one audio input"):
        ctc.stream([clip, clip])


# ------------------------------------------------------------------------------------------ live
class PrefixStable:
    """A stand-in CTC model that hears a fixed script: the words that ended within the audio it gets."""

    is_whisper = False
    sampling_rate = SR

    def __init__(self, words: list[tuple[float, float, str]]):
        self.words = words

    def __call__(self, samples, return_timestamps, **_options):
        seconds = len(samples) / SR
        # the buffer's start in stream time is not known to a model: samples carry it as an offset marker
        offset = float(samples[0]) if len(samples) else 0.0
        heard = [(s - offset, e - offset, t) for s, e, t in self.words if s >= offset - 1e-6 and e - offset <= seconds]
        return {
            "text": " ".join(t for *_, t in heard),
            "chunks": [{"timestamp": (s, e), "text": t} for s, e, t in heard],
        }


def test_live_local_agreement_confirms_the_script_with_bounded_delay() -> None:
    words = [(0.3 + 0.7 * i, 0.8 + 0.7 * i, f"w{i}") for i in range(60)]  # 42 s of speech
    time_axis = np.arange(int(43 * SR)) / SR  # each sample holds its own time: the model reads the offset
    live = LiveTranscriber(PrefixStable(words), min_chunk_s=1.0, trim_s=10.0, max_buffer_s=20.0)
    events = list(live.run(np.array_split(time_axis.astype(np.float32), 86)))
    assert events[-1].final and events[-1].text == " ".join(t for *_, t in words)
    confirmed = [w for e in events for w in e.confirmed]
    assert [w["text"] for w in confirmed] == [t for *_, t in words]  # each word confirmed once, in order
    starts = [w["timestamp"][0] for w in confirmed]
    assert starts == sorted(starts)
    # a word is confirmed by the second transcription that hears it: at most 2 updates (2 s) after its end
    delays = [e.received - w["timestamp"][1] for e in events[:-1] for w in e.confirmed]
    assert max(delays) <= 2.0 + 1e-6
    assert len(live.buffer) / SR <= 20.0
    # silence (nothing heard, nothing to confirm) does not grow the buffer past max_buffer_s
    quiet = LiveTranscriber(PrefixStable([]), min_chunk_s=1.0, trim_s=3.0, max_buffer_s=5.0)
    sizes = [len(quiet.buffer) / SR for _ in quiet.run(np.array_split(time_axis[: 20 * SR], 40))]
    assert max(sizes) <= 5.0 and quiet.text == ""


def test_live_whisper_one_block_equals_offline(whisper, clip) -> None:
    audio = clip[: 25 * SR]
    offline = whisper(audio, return_timestamps=True)
    events = list(whisper.live([audio], min_chunk_s=1.0))
    words = [w for segment in offline["chunks"] for w in segment["text"].split()]  # live text: words, one space
    assert events[-1].final and events[-1].text == " ".join(words)


def test_live_ctc_blocks_invariants(ctc, clip, tmp_path) -> None:
    path = tmp_path / "clip.wav"
    sf.write(path, clip[: 20 * SR], SR)
    events = list(ctc.live(file_blocks(str(path), 8000, 0.5), sampling_rate=8000, min_chunk_s=2.0, trim_s=6.0))
    assert len(events) >= 10 and events[-1].final
    received = [e.received for e in events]
    assert received == sorted(received) and received[-1] == pytest.approx(20.0, abs=0.01)
    confirmed = [w for e in events for w in e.confirmed]
    assert events[-1].text == " ".join(w["text"] for w in confirmed)  # never taken back, nothing lost
    ends = [w["timestamp"][1] for w in confirmed]
    assert all(a <= b + 0.1 for a, b in zip(ends, ends[1:])) and ends[-1] <= 20.0 + 1e-6
    for e in events:  # text so far grows by exactly what each event confirms
        assert e.text.endswith(e.confirmed_text)


def test_live_whisper_blocks_invariants(whisper, clip) -> None:
    blocks = np.array_split(clip[: 12 * SR], 12)
    live = whisper.live(blocks, min_chunk_s=2.0, trim_s=4.0, max_buffer_s=8.0, num_beams=1, max_new_tokens=16)
    events = list(live)
    assert len(events) == 7 and events[-1].final and events[-1].received == pytest.approx(12.0)
    confirmed = [w for e in events for w in e.confirmed]
    assert events[-1].text == " ".join(w["text"] for w in confirmed)
    for e in events:  # confirmed words lie within the audio received when they were confirmed
        assert all(0 <= w["timestamp"][0] <= w["timestamp"][1] <= e.received + 1e-6 for w in e.confirmed)
    starts = [w["timestamp"][0] for w in confirmed]
    assert all(a <= b + 0.1 for a, b in zip(starts, starts[1:]))


def test_live_bad_options(ctc) -> None:
    with pytest.raises(InvalidInputError, match="min_chunk_s"):
        list(ctc.live([], min_chunk_s=0))
    with pytest.raises(InvalidInputError, match="return_timestamps"):
        list(ctc.live([], return_timestamps="char"))
    with pytest.raises(InvalidInputError, match="1-D or 2-D"):
        list(ctc.live([np.zeros((2, 2, 2))]))


# ------------------------------------------------------------------------------------------ command line
def test_cli_format_srt_and_vtt(tiny, whisper, clip, tmp_path, capsys) -> None:
    path = tmp_path / "talk.wav"
    sf.write(path, clip[: 40 * SR], SR)
    bundle = str(tiny.get("whisper-tiny").bundle)
    out = tmp_path / "talk.srt"
    assert main(["run", ASR, bundle, str(path), "--dtype", "fp32", "--format", "srt", "--output", str(out)]) == 0
    expected = whisper(str(path), return_timestamps=True)
    from edgetf import transcripts

    assert out.read_text(encoding="utf-8") == transcripts.to_srt(expected, duration=40.0)
    assert main(["run", ASR, bundle, str(path), "--dtype", "fp32", "--format", "vtt"]) == 0
    assert capsys.readouterr().out == transcripts.to_vtt(expected, duration=40.0)
    assert main(["run", ASR, bundle, str(path), "--format", "docx"]) == 2
    assert "srt, vtt, txt, tsv, json" in capsys.readouterr().err


def test_microphone_blocks_is_a_thin_layer_over_sounddevice(monkeypatch) -> None:
    import sys
    import types

    from edgetf.pipelines.live_asr import microphone_blocks

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(InvalidInputError, match="pip install sounddevice"):
        next(microphone_blocks())
    opened = {}

    class InputStream:
        def __init__(self, **kwargs):
            opened.update(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            opened["closed"] = True

        def read(self, frames):
            return np.full((frames, 1), 0.25, np.float32), False

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(InputStream=InputStream))
    blocks = microphone_blocks(8000, 0.5)
    first = next(blocks)
    assert first.shape == (4000,) and float(first[0]) == 0.25
    assert opened == {"samplerate": 8000, "channels": 1, "dtype": "float32", "device": None}
    blocks.close()
    assert opened["closed"]
