"""What an srt or txt must be before it is kept: UTF-8 text, well-formed cues, and every word of the json-v2."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from notification_flow.formats import NotWhatItClaims, check, parse_formats, with_formats, words_of

TRANSCRIPT = {"results": [
    {"type": "word", "alternatives": [{"content": "Hello"}]},
    {"type": "punctuation", "alternatives": [{"content": ","}]},
    {"type": "word", "alternatives": [{"content": "world"}]},
]}
SRT = "1\n00:00:00,100 --> 00:00:00,900\nHello,\n\n2\n00:00:01,000 --> 00:00:01,500\nworld\n"


def words() -> list[str]:
    return words_of(io.BytesIO(json.dumps(TRANSCRIPT).encode()))


def test_the_real_thing_passes() -> None:
    assert words() == ["Hello", "world"]
    check("srt", SRT.encode(), words())
    check("txt", b"Hello, world\n", words())
    check("txt", b"", [])  # no words, no text


@pytest.mark.parametrize(("fmt", "data", "why"), [
    ("txt", b"Hello, \xff world", "UTF-8"),
    ("txt", b"Hello,\x00 world", "NUL"),
    ("txt", b"Hello, wor", "lacks word 2"),  # cut short
    ("txt", b"", "lacks word 1"),  # empty while the transcript has words
    ("srt", SRT.split("\n\n")[0].encode(), "lacks word 2"),  # cut at a cue boundary
    ("srt", SRT[:20].encode(), "cue 1"),  # cut inside a cue
    ("srt", b"Hello, world\n", "cue 1"),  # text, not SubRip
])
def test_what_is_not_what_it_claims_is_refused_without_quoting_it(fmt: str, data: bytes, why: str) -> None:
    with pytest.raises(NotWhatItClaims, match=why) as refused:
        check(fmt, data, words())
    assert "world" not in str(refused.value)  # transcript text never reaches a log line


def test_format_option_and_the_notification_contents() -> None:
    assert parse_formats("txt, srt,json-v2") == "srt,txt"
    with pytest.raises(argparse.ArgumentTypeError):
        parse_formats("vtt")
    job = {"notification_config": [{"url": "other"}, {"url": "ours", "contents": ["transcript"]}]}
    assert with_formats(job, "srt")["notification_config"][-1]["contents"] == ["transcript", "transcript.srt"]
    assert with_formats({"x": 1}, "") == {"x": 1}
