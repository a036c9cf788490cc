"""Transcripts: deterministic, shaped like the real json-v2 samples, and txt/srt from the same words."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from emulator import Emulator, media, transcripts
from tests.emulator.support import AUTH, submit_id, wait_for, wav_bytes

SAMPLES = Path(__file__).parent / "fixtures"


def finished(emu: Emulator, audio: bytes, **config) -> tuple[str, dict]:
    job_id = submit_id(emu.url, audio, **config)
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="done")
    return job_id, json.loads(emu.transcript_bytes(job_id))


def text_of(emu: Emulator, job_id: str, fmt: str) -> bytes:
    import requests

    response = requests.get(f"{emu.url}/jobs/{job_id}/transcript", params={"format": fmt}, headers=AUTH, timeout=10)
    assert response.status_code == 200
    return response.content


def test_same_audio_and_config_give_the_same_transcript(emu: Emulator) -> None:
    audio = wav_bytes(20, tone=5)
    first, first_doc = finished(emu, audio)
    second, second_doc = finished(emu, audio, tracking={"title": "other job"})
    assert first_doc["results"] == second_doc["results"] and first_doc["results"]
    for fmt in ("txt", "srt"):
        assert text_of(emu, first, fmt) == text_of(emu, second, fmt)
    assert emu.transcript_bytes(first) == emu.transcript_bytes(first)  # stable bytes on every read
    _, other_audio = finished(emu, wav_bytes(20, tone=6))
    assert other_audio["results"] != first_doc["results"]
    _, other_config = finished(emu, audio, transcription_config={"language": "en", "diarization": "speaker"})
    assert [r["alternatives"][0]["content"] for r in other_config["results"]] != [
        r["alternatives"][0]["content"] for r in first_doc["results"]]


def test_json_v2_has_the_shape_of_real_transcripts(emu: Emulator) -> None:
    real = json.loads((SAMPLES / "transcript-json-v2-docs-example.json").read_text())
    job_id, doc = finished(emu, wav_bytes(12.7), tracking={"reference": "ref"})
    assert doc["format"] == "2.9"
    assert set(doc) == set(real)
    assert doc["job"] == {**{k: emu.job(job_id)[k] for k in ("id", "created_at", "data_name", "duration")},
                          "tracking": {"reference": "ref"}}
    assert set(real["metadata"]) == set(doc["metadata"])
    assert set(doc["metadata"]["language_pack_info"]) == set(real["metadata"]["language_pack_info"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["metadata"]["created_at"])
    real_keys = {kind: set().union(*(set(r) for r in real["results"] if r["type"] == kind))
                 for kind in ("word", "punctuation")}
    for result in doc["results"]:
        assert set(result) == real_keys[result["type"]]
        assert set(result["alternatives"][0]) == {"confidence", "content", "language", "speaker"}
        assert 0 <= result["start_time"] <= result["end_time"] <= 12.7
        assert result["alternatives"][0]["speaker"] == "UU"
    assert {r["type"] for r in doc["results"]} == {"word", "punctuation"}
    assert doc["results"][-1]["type"] == "punctuation" and doc["results"][-1]["is_eos"] is True
    starts = [r["start_time"] for r in doc["results"]]
    assert starts == sorted(starts)


def test_speaker_diarization_labels_and_txt_headers(emu: Emulator) -> None:
    config = {"language": "en", "diarization": "speaker", "speaker_diarization_config": {"max_speakers": 3}}
    job_id, doc = finished(emu, wav_bytes(60, tone=9), transcription_config=config)
    speakers = {r["alternatives"][0]["speaker"] for r in doc["results"]}
    assert speakers <= {"S1", "S2", "S3"} and len(speakers) >= 2
    txt = text_of(emu, job_id, "txt").decode()
    assert set(re.findall(r"^SPEAKER: (S\d)$", txt, re.M)) == speakers


def test_channel_diarization_uses_the_labels(emu: Emulator) -> None:
    config = {"language": "en", "diarization": "channel", "channel_diarization_labels": ["Agent", "Caller"]}
    _, doc = finished(emu, wav_bytes(30, channels=2), transcription_config=config)
    assert {r["channel"] for r in doc["results"]} == {"Agent", "Caller"}
    assert all("speaker" not in r["alternatives"][0] for r in doc["results"])


def test_txt_and_srt_render_the_same_words(emu: Emulator) -> None:
    config = {"language": "en"}
    job_id, doc = finished(emu, wav_bytes(40), transcription_config=config, output_config={
        "srt_overrides": {"max_line_length": 20, "max_lines": 1}})
    words = [r["alternatives"][0]["content"] for r in doc["results"] if r["type"] == "word"]
    txt = text_of(emu, job_id, "txt").decode()
    assert re.findall(r"[A-Za-z]+", txt) == words
    srt = text_of(emu, job_id, "srt").decode()
    cues = srt.strip().split("\n\n")
    assert re.findall(r"[A-Za-z]+", re.sub(r"^\d+\n.*-->.*\n", "", srt, flags=re.M)) == words
    for number, cue in enumerate(cues, start=1):
        index, timing, *lines = cue.split("\n")
        assert index == str(number)
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", timing)
        assert len(lines) == 1 and (len(lines[0]) <= 20 or " " not in lines[0])


def test_permitted_marks_limit_punctuation(emu: Emulator) -> None:
    config = {"language": "en", "punctuation_overrides": {"permitted_marks": ["."]}}
    _, doc = finished(emu, wav_bytes(60, tone=3), transcription_config=config)
    assert {r["alternatives"][0]["content"] for r in doc["results"] if r["type"] == "punctuation"} == {"."}


def test_short_audio_gives_times_inside_it(emu: Emulator) -> None:
    _, doc = finished(emu, wav_bytes(0.7))
    assert all(r["end_time"] <= 0.7 for r in doc["results"])


def test_render_functions_on_the_official_example() -> None:
    """The renderers work on a real transcript too, not only on the emulator's own output."""
    real = json.loads((SAMPLES / "transcript-json-v2-docs-example.json").read_text())
    txt = transcripts.render_txt(real)
    assert txt.startswith("Welcome to Speechmatics") and txt.endswith("you.\n")
    assert transcripts.render_srt(real).startswith("1\n00:00:00,720 --> ")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64\x00\x00", "mp3"),
        (b"\xff\xf1\x50\x80\x00\x1f", "aac"),
        (b"ADIF\x00\x00", "aac"),
        (b"OggS\x00\x02\x00\x00", "ogg"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "m4a"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "mp4"),
        (b"#!AMR\n\x3c", "amr"),
        (b"\x00\x00\x01\xba\x44\x00", "mpeg"),
        (b"%PDF-1.7\n", None),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None),
        (b"", None),
    ],
)
def test_formats_are_recognised_by_magic_bytes(head: bytes, kind: str | None) -> None:
    assert media.sniff(head) == kind


def test_durations(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes(2.5, rate=16000, channels=2))
    assert media.inspect(wav) == media.MediaInfo("wav", 2.5, 2)
    assert media.inspect(wav).duration == 3
    extensible = bytearray(wav_bytes(1.25))
    extensible[20:22] = struct.pack("<H", 0xFFFE)  # a format tag the wave module refuses
    (tmp_path / "x.wav").write_bytes(bytes(extensible))
    assert media.inspect(tmp_path / "x.wav").seconds == 1.25
    streaminfo = struct.pack(">HH3s3s", 4096, 4096, b"\0\0\0", b"\0\0\0")
    packed = (44100 << 44) | (1 << 41) | (15 << 36) | (44100 * 7)
    flac = tmp_path / "a.flac"
    flac.write_bytes(b"fLaC\x80\x00\x00\x22" + streaminfo + packed.to_bytes(8, "big") + bytes(16))
    assert media.inspect(flac) == media.MediaInfo("flac", 7.0, 2)
    mp3 = tmp_path / "a.mp3"
    mp3.write_bytes(b"ID3" + bytes(160_000 - 3))
    assert media.inspect(mp3).duration == 10  # estimated at 128 kbit/s
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello")
    assert media.inspect(junk) == media.MediaInfo(None, 0.0)
