"""Transcript writers (edgetf.transcripts): exact SRT/VTT/TSV/txt/JSON text, and the timing property --
written cues never go backwards and never overlap, whatever chunks come in (hypothesis)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetf import transcripts
from edgetf.errors import InvalidInputError

WHISPER = {
    "text": " Hello there. General Kenobi!",
    "chunks": [
        {"timestamp": (0.0, 1.5), "text": " Hello there."},
        {"timestamp": (3661.25, None), "text": " General --> Kenobi!"},
    ],
}


def test_srt_exact() -> None:
    assert transcripts.to_srt(WHISPER, duration=3663.0) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:01:01,250 --> 01:01:03,000\nGeneral -> Kenobi!\n\n"
    )


def test_vtt_tsv_txt_json_exact() -> None:
    assert transcripts.to_vtt(WHISPER, duration=3663.0) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n01:01:01.250 --> 01:01:03.000\nGeneral -> Kenobi!\n\n"
    )
    assert transcripts.to_tsv(WHISPER, duration=3663.0) == (
        "start\tend\ttext\n0\t1500\tHello there.\n3661250\t3663000\tGeneral -> Kenobi!\n"
    )
    assert transcripts.to_txt(WHISPER) == "Hello there.\nGeneral -> Kenobi!\n"
    assert transcripts.to_txt({"text": " no chunks "}) == "no chunks\n"
    assert json.loads(transcripts.to_json(WHISPER)) == {
        "text": WHISPER["text"],
        "chunks": [{"timestamp": list(c["timestamp"]), "text": c["text"]} for c in WHISPER["chunks"]],
    }


def test_open_end_without_duration_ends_at_its_start() -> None:
    assert "01:01:01,250 --> 01:01:01,250" in transcripts.to_srt(WHISPER)


def test_ctc_words_grouped_into_two_line_cues_and_split_at_pauses() -> None:
    words = [{"timestamp": (i * 0.5, i * 0.5 + 0.4), "text": f"word{i:02d}"} for i in range(20)]
    words.append({"timestamp": (20.0, 20.5), "text": "after"})  # a 10-s pause: a cue of its own
    cues = transcripts.cues({"text": "", "chunks": words})
    assert [c.text.split("\n") for c in cues[:2]] == [
        ["word00 word01 word02 word03 word04 word05", "word06 word07 word08 word09 word10 word11"],
        ["word12 word13 word14 word15 word16 word17", "word18 word19"],
    ]
    assert (cues[0].start, cues[0].end) == (0.0, 5.9)
    assert (cues[2].start, cues[2].text) == (20.0, "after")
    assert all(len(line) <= 42 for c in cues for line in c.text.split("\n"))


def test_ctc_characters_joined_into_words() -> None:
    text = "HI YOU"
    chars = [{"timestamp": (i * 0.1, i * 0.1 + 0.1), "text": ch} for i, ch in enumerate(text)]
    assert transcripts.to_srt({"text": text, "chunks": chars}) == "1\n00:00:00,000 --> 00:00:00,600\nHI YOU\n\n"


def test_write_picks_format_from_extension(tmp_path) -> None:
    path = transcripts.write(WHISPER, tmp_path / "out.vtt", duration=3663.0)
    assert path.read_text(encoding="utf-8").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: transcripts.to_srt({"text": "x"}), "return_timestamps"),
        (lambda: transcripts.render(WHISPER, "docx"), "srt, vtt, txt, tsv, json"),
        (
            lambda: transcripts.to_srt({"text": "", "chunks": [{"timestamp": (float("nan"), 1.0), "text": "a"}]}),
            "finite",
        ),
        (lambda: transcripts.to_srt({"text": "", "chunks": [{"text": "a"}]}), "timestamp"),
        (lambda: transcripts.to_srt("text"), "ASR result"),
        (lambda: transcripts.cues(WHISPER, granularity="line"), "segment, word, char"),
        (lambda: transcripts.cues(WHISPER, max_line_width=0), "max_line_width"),
    ],
)
def test_bad_input_is_named(call, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        call()


SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$", re.M)


def srt_times(text: str) -> list[tuple[int, int]]:
    out = []
    for m in SRT_TIME.finditer(text):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, m.groups())
        out.append(((h1 * 60 + m1) * 60_000 + s1 * 1000 + ms1, (h2 * 60 + m2) * 60_000 + s2 * 1000 + ms2))
    return out


times = st.one_of(st.none(), st.floats(min_value=0.0, max_value=7200.0, allow_nan=False))
chunk = st.fixed_dictionaries(
    {"timestamp": st.tuples(times, times), "text": st.sampled_from([" a b", " word", "", " x -> y", " long text here"])}
)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(chunk, max_size=12), duration=st.one_of(st.none(), st.floats(0.0, 7200.0)))
def test_written_cues_never_go_backwards_or_overlap(chunks, duration) -> None:
    result = {"text": "".join(c["text"] for c in chunks), "chunks": chunks}
    cues = transcripts.cues(result, duration=duration, granularity="segment")
    assert len(cues) == sum(1 for c in chunks if c["text"].strip())
    srt = transcripts.to_srt(result, duration=duration, granularity="segment")
    vtt = transcripts.to_vtt(result, duration=duration, granularity="segment")
    spans = srt_times(srt)
    assert len(spans) == len(cues) == vtt.count(" --> ")
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start <= end
        previous_end = end
    if duration is not None and spans:
        assert spans[-1][1] <= round(duration * 1000)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.fixed_dictionaries({"timestamp": st.tuples(times, times), "text": st.sampled_from(["ab", "c", "word"])}),
        max_size=30,
    )
)
def test_grouped_words_never_go_backwards_or_overlap(chunks) -> None:
    spans = srt_times(transcripts.to_srt({"text": "", "chunks": chunks}, granularity="word"))
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start <= end
        previous_end = end
