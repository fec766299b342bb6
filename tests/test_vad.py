"""Voice activity detection (edgetf.audio.vad, the vad_filter option of automatic-speech-recognition):
probabilities and regions against silero-vad's own reference code, the time map, and transcripts."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgetf
from edgetf.audio.io import load_audio
from edgetf.audio.samples import speech_like
from edgetf.audio.vad import SileroVAD, TimeMap, VadOptions, collect, detect_speech, speech_regions
from edgetf.errors import InvalidInputError

SR = 16000
SPOKEN_FOX = Path(__file__).parent / "data" / "espeak-fox-16k.flac"


def clip(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Speech-like bursts separated by silence and low noise; returns the audio and where the bursts are."""
    rng = np.random.default_rng(seed)
    parts, truth, pos = [], [], 0
    for seconds, gap, burst_seed in ((1.5, 3.0, 11), (2.0, 4.0, 1), (1.0, 2.5, 9)):  # seeds Silero hears as speech
        silence = rng.normal(0, 0.002, int(gap * SR)).astype(np.float32)
        burst = speech_like(seconds, SR, burst_seed).astype(np.float32)
        parts += [silence, burst]
        truth.append((pos + silence.shape[0], pos + silence.shape[0] + burst.shape[0]))
        pos += silence.shape[0] + burst.shape[0]
    parts.append(np.zeros(2 * SR, np.float32))
    return np.concatenate(parts), truth


@pytest.fixture(scope="module")
def vad():
    return SileroVAD()


def test_probabilities_and_regions_match_silero_reference(vad):
    """silero-vad's own OnnxWrapper + get_speech_timestamps_from_probs (legacy max-speech cut, as faster-whisper)."""
    torch = pytest.importorskip("torch")
    utils = pytest.importorskip("silero_vad.utils_vad")
    from edgetf.audio.vad import MODEL_PATH

    audio, _ = clip()
    probs = vad.probabilities(audio)
    ref_model = utils.OnnxWrapper(str(MODEL_PATH), force_onnx_cpu=True)
    ref = ref_model.audio_forward(torch.from_numpy(audio), SR).numpy()[0]
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    for params in ({}, {"min_silence_duration_ms": 300, "speech_pad_ms": 100}, {"max_speech_duration_s": 1.0}):
        opts = VadOptions.from_mapping(params)
        want = utils.get_speech_timestamps_from_probs(
            list(ref),
            sampling_rate=SR,
            threshold=opts.threshold,
            min_speech_duration_ms=opts.min_speech_duration_ms,
            max_speech_duration_s=opts.max_speech_duration_s,
            min_silence_duration_ms=opts.min_silence_duration_ms,
            speech_pad_ms=opts.speech_pad_ms,
            use_max_poss_sil_at_max_speech=False,
            audio_length_samples=audio.shape[0],
        )
        assert speech_regions(probs, audio.shape[0], opts) == [(w["start"], w["end"]) for w in want], params


def test_regions_are_speech_and_the_silence_is_cut(vad):
    """Invariants (synthetic bursts are only partly heard as speech): every region lies on a burst (within the
    padding), the first burst is found, regions are ordered and inside the audio, most of the silence is cut."""
    audio, truth = clip()
    pad = 0.2 * SR + 2 * 512  # the padding plus the 32-ms windows on each side
    regions = detect_speech(audio, SR, VadOptions(min_silence_duration_ms=500, speech_pad_ms=200), vad)
    assert regions and regions[0][0] <= truth[0][0] + 0.3 * SR and regions[0][1] >= truth[0][1] - 0.3 * SR
    for a, b in regions:
        assert any(s - pad <= a and b <= e + pad for s, e in truth), (a, b)
    assert all(0 <= a < b <= audio.shape[0] for a, b in regions)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(regions, regions[1:]))
    assert sum(b - a for a, b in regions) < 0.5 * audio.shape[0]


def test_spoken_sentences_are_found(vad, tmp_path):
    """Two spoken sentences among seconds of silence give two regions, each covering its sentence's voiced
    samples and padded by at most speech_pad_ms (plus a 32-ms window). The sentence is espeak-ng's
    "The quick brown fox jumps over the lazy dog." at 16 kHz, kept in tests/data (no espeak-ng needed)."""
    speech = load_audio(str(SPOKEN_FOX), SR).samples
    loud = np.flatnonzero(np.abs(speech) > 0.02)
    gaps = (3 * SR, 4 * SR, 3 * SR)
    audio = np.concatenate([np.zeros(gaps[0]), speech, np.zeros(gaps[1]), speech, np.zeros(gaps[2])])
    audio = audio.astype(np.float32)
    starts = (gaps[0], gaps[0] + speech.shape[0] + gaps[1])
    regions = detect_speech(audio, SR, VadOptions(), vad)
    assert len(regions) == 2
    slack = 0.4 * SR + 512
    for (a, b), start in zip(regions, starts):
        assert a <= start + loud[0] and b >= start + loud[-1]
        assert a >= start + loud[0] - slack - 0.1 * SR and b <= start + loud[-1] + slack + 0.1 * SR


def test_time_map_is_monotonic_and_inverts_collect():
    regions = [(16000, 32000), (48000, 56000), (80000, 96000)]
    tmap = TimeMap(regions, SR)
    assert tmap.original(0.0) == 1.0 and tmap.original(1.0, is_end=True) == 2.0 and tmap.original(1.0) == 3.0
    assert tmap.original(1.5, is_end=True) == 3.5 and tmap.original(2.5) == 6.0 and tmap.original(None) is None
    times = np.linspace(0, 2.5, 101)
    mapped = [tmap.original(t) for t in times]
    assert all(b >= a for a, b in zip(mapped, mapped[1:])) and mapped[0] >= 0 and mapped[-1] <= 96000 / SR
    signal = np.arange(100000, dtype=np.float32)
    joined = collect(signal, regions)
    for t in (0.0, 0.3, 1.2, 2.2):  # the sample at a joined time is the sample at the mapped original time
        assert joined[int(t * SR)] == signal[int(round(tmap.original(t) * SR))]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"thresold": 0.5}, "unknown vad_parameters"),
        ({"threshold": 1.5}, "probability in"),
        ({"speech_pad_ms": -1}, "duration >= 0"),
        ({"max_speech_duration_s": 0}, "duration > 0"),
        ({"threshold": "high"}, "must be a number"),
        ("fast", "must be a dict"),
    ],
)
def test_parameters_are_checked(params, message):
    with pytest.raises(InvalidInputError, match=message):
        VadOptions.from_mapping(params)


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("wav2vec2-ctc", {"return_timestamps": "word"}),
        ("whisper-tiny", {"return_timestamps": True, "max_new_tokens": 20}),
    ],
)
def test_vad_filter_transcribes_the_speech_only_parts(tiny, model, options):
    pipe = edgetf.pipeline("automatic-speech-recognition", tiny.get(model).bundle)
    audio, _ = clip()
    params = {"min_silence_duration_ms": 500, "speech_pad_ms": 200}
    got = pipe(audio, vad_filter=True, vad_parameters=params, **options)
    regions = detect_speech(audio, SR, VadOptions.from_mapping(params), SileroVAD())
    speech_only = pipe(collect(audio, regions), **options)
    assert got["text"] == speech_only["text"]
    tmap = TimeMap(regions, SR)
    assert len(got["chunks"]) == len(speech_only["chunks"])
    for moved, plain in zip(got["chunks"], speech_only["chunks"]):
        assert moved["text"] == plain["text"]
        assert moved["timestamp"][0] == tmap.original(plain["timestamp"][0])
    starts = [c["timestamp"][0] for c in got["chunks"]]
    if model == "wav2vec2-ctc":  # the random tiny Whisper emits timestamps past its input's end, out of order
        assert starts == sorted(starts) and all(0 <= s <= audio.shape[0] / SR for s in starts)
    silence = np.zeros(5 * SR, np.float32)
    assert pipe(silence, vad_filter=True, **options) == {"text": "", "chunks": []}
    with pytest.raises(InvalidInputError, match="unknown vad_parameters"):
        pipe(audio, vad_filter=True, vad_parameters={"treshold": 0.3})


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 5000)), min_size=1, max_size=6),
    times=st.lists(st.floats(0, 1), min_size=2, max_size=20),
)
def test_time_map_property(gaps, times):
    """For any regions: mapped times never go backwards, stay within the regions' span, and a sample of the
    joined audio is the original sample at the mapped time."""
    regions, pos = [], 0
    for silence, length in gaps:
        regions.append((pos + silence, pos + silence + length))
        pos += silence + length
    tmap = TimeMap(regions, SR)
    total = sum(b - a for a, b in regions)
    ordered = sorted(t * (total - 1) / SR for t in times)
    mapped = [tmap.original(t) for t in ordered]
    assert all(b >= a for a, b in zip(mapped, mapped[1:]))
    assert regions[0][0] / SR <= mapped[0] and mapped[-1] <= regions[-1][1] / SR
    signal = np.arange(pos, dtype=np.float64)
    joined = collect(signal.astype(np.float32), regions).astype(np.float64)
    for t, m in zip(ordered, mapped):
        assert joined[int(round(t * SR))] == signal[int(round(m * SR))]
    ends = [tmap.original(t, is_end=True) for t in ordered]
    assert all(b >= a for a, b in zip(ends, ends[1:]))
