"""Deterministic, structurally real transcripts in the three formats the API serves.

The words are nonsense drawn from a fixed vocabulary, but everything a client relies on is real:
the json-v2 layout (format "2.9", job, metadata, results of words and punctuation), timings inside
the audio, speaker labels (``UU`` or ``S1``.. with speaker diarization, channel labels with channel
diarization) and txt/srt rendered from the same results. The word sequence is seeded from the
audio's SHA-256 and the transcription/output config, so the same audio and config always give the
same results, txt and srt bytes; json-v2 differs between jobs only in ``job`` and ``metadata.created_at``.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

FORMAT_VERSION = "2.9"
ORCHESTRATOR_VERSION = "2025.06.28+emulator"
_WORDS = (
    "the a of to and in that it is was for on are as with his they at be this from have or by one "
    "had not but what all were when we there can an your which their said if do will each about how "
    "up out them then she many some so these would other into has more her two like him see time "
    "could no make than first been its who now people my made over did down only way find use may "
    "water long little very after words called just where most know get through back much before go "
    "good new write our used me man too any day same right look think also around another came come "
    "work three word must because does part even place well such here take why help put different "
    "away again off went old number great tell men say small every found still between name should "
    "home big give air line set own under read last never us left end along while might next sound "
    "below saw something thought both few those always looked show large often together asked house "
    "world going want school important until form food keep children feet land side without boy once "
    "animals life enough took sometimes four head above kind began almost live page got earth need "
    "far hand high year mother light parts country father let night following picture being study "
    "second eyes soon times story boys since white days ever paper hard near sentence better best "
    "across during today others however sure means knew try told young miles sun ways thing whole"
)
VOCABULARY = tuple(_WORDS.split())
LANGUAGES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "sv": "Swedish", "pl": "Polish", "ja": "Japanese",
    "cmn": "Mandarin", "ar": "Arabic", "hi": "Hindi", "ru": "Russian", "auto": "Automatic",
}
NO_DELIMITER = {"ja", "cmn", "yue", "th"}
# The add-ons whose failures RecognitionMetadata reports: config key -> (metadata key, error type).
ADDON_ERRORS = {
    "translation_config": ("translation_errors", "translation_failed"),
    "summarization_config": ("summarization_errors", "summarization_failed"),
    "sentiment_analysis_config": ("sentiment_analysis_errors", "sentiment_analysis_failed"),
    "topic_detection_config": ("topic_detection_errors", "topic_detection_failed"),
    "auto_chapters_config": ("auto_chapters_errors", "auto_chapters_failed"),
}
ADDON_ERROR_KEYS = frozenset(metadata_key for metadata_key, _ in ADDON_ERRORS.values())
RIGHT_TO_LEFT = {"ar", "he", "fa", "ur"}


def seed_for(audio_sha256: str, config: dict[str, Any]) -> int:
    """Combine audio and the output-relevant config into one integer seed."""
    relevant = {key: config.get(key) for key in ("transcription_config", "output_config")}
    material = audio_sha256 + json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


def build_json_v2(
    job_info: dict[str, Any], config: dict[str, Any], seconds: float, channels: int, seed: int, created_at: str
) -> dict[str, Any]:
    """The whole json-v2 document of a finished job."""
    transcription = config.get("transcription_config") or {}
    metadata: dict[str, Any] = {
        "created_at": created_at,
        "type": "transcription",
        "transcription_config": transcription,
        "language_pack_info": language_pack_info(transcription.get("language", "en")),
        "orchestrator_version": ORCHESTRATOR_VERSION,
    }
    if config.get("output_config"):
        metadata["output_config"] = config["output_config"]
    results = _Speech(transcription, seconds, channels, random.Random(seed)).results()
    return {"format": FORMAT_VERSION, "job": job_info, "metadata": metadata, "results": results}


def addon_errors(config: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """``metadata.<add-on>_errors`` for every add-on the config asks for, as when each of them failed."""
    errors = {}
    for config_key, (metadata_key, kind) in ADDON_ERRORS.items():
        if config_key in config:
            name = config_key.removesuffix("_config").replace("_", " ")
            errors[metadata_key] = [{"type": kind, "message": f"{name.capitalize()} failed (injected fault)"}]
    return errors


def language_pack_info(language: str) -> dict[str, Any]:
    return {
        "adapted": False,
        "itn": True,
        "language_description": LANGUAGES.get(language, language),
        "word_delimiter": "" if language in NO_DELIMITER else " ",
        "writing_direction": "right-to-left" if language in RIGHT_TO_LEFT else "left-to-right",
    }


def dump_json(document: dict[str, Any]) -> bytes:
    """One serialisation everywhere (API, notifications, in-process handle) so bytes always agree."""
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class _Speech:
    """Lays sentences of random words over the audio's timeline, never past its end."""

    def __init__(self, transcription: dict[str, Any], seconds: float, channels: int, rng: random.Random):
        self.rng = rng
        self.end = seconds
        self.language = transcription.get("language", "en")
        self.labels = _labels(transcription, channels)
        self.channel_mode = transcription.get("diarization") == "channel"
        marks = (transcription.get("punctuation_overrides") or {}).get("permitted_marks") or ["all"]
        self.marks = None if "all" in marks else set(marks)
        self.items: list[dict[str, Any]] = []

    def results(self) -> list[dict[str, Any]]:
        clock = self.rng.uniform(0.1, 0.6)
        while clock is not None:
            clock = self._sentence(clock, self.rng.choice(self.labels))
        return self.items

    def _sentence(self, clock: float, label: str) -> float | None:
        """Add one sentence; returns the start of the next one, or None when the audio is used up."""
        length, spoken, comma_after = self.rng.randint(4, 14), 0, None
        for index in range(length):
            word = self.rng.choice(VOCABULARY)
            end = clock + 0.12 + 0.06 * len(word) * self.rng.uniform(0.8, 1.2)
            if end + 0.01 > self.end:
                break
            if comma_after is not None:
                self._punctuation(",", comma_after, label, eos=False)
            self._add("word", word.capitalize() if index == 0 else word, clock, end, label)
            spoken += 1
            comma_after = end if self.rng.random() < 0.1 else None
            clock = end + self.rng.uniform(0.02, 0.15)
        if spoken:
            last_end = self.items[-1]["end_time"]
            self._punctuation("?" if self.rng.random() < 0.1 else ".", last_end, label, eos=True)
        if spoken < length:
            return None
        return clock + self.rng.uniform(0.3, 1.0)

    def _punctuation(self, mark: str, at: float, label: str, eos: bool) -> None:
        if self.marks is not None and mark not in self.marks:
            return
        self._add("punctuation", mark, at, at, label)
        self.items[-1].update(attaches_to="previous", is_eos=eos)

    def _add(self, kind: str, content: str, start: float, end: float, label: str) -> None:
        confidence = 1.0 if kind == "punctuation" or self.rng.random() < 0.7 else self.rng.uniform(0.5, 1.0)
        alternative = {"confidence": round(confidence, 2), "content": content, "language": self.language}
        item: dict[str, Any] = {"alternatives": [alternative], "end_time": round(end, 2),
                                "start_time": round(start, 2), "type": kind}
        if self.channel_mode:
            item["channel"] = label
        else:
            alternative["speaker"] = label
        self.items.append(item)


def _labels(transcription: dict[str, Any], channels: int) -> list[str]:
    mode = transcription.get("diarization", "none")
    if mode == "speaker":
        config = transcription.get("speaker_diarization_config") or {}
        count = max(1, min(int(config.get("max_speakers") or 2), 10))
        return [f"S{number}" for number in range(1, count + 1)]
    if mode == "channel":
        given = transcription.get("channel_diarization_labels") or []
        return list(given) or [f"channel_{number}" for number in range(1, max(channels, 2) + 1)]
    return ["UU"]


def render_txt(document: dict[str, Any]) -> str:
    """Plain text; with diarization one ``SPEAKER: S1`` / ``CHANNEL: x`` header per turn."""
    delimiter = document["metadata"]["language_pack_info"]["word_delimiter"]
    turns = _turns(document["results"])
    if len(turns) == 1 and turns[0][0] == "UU":
        return _join(turns[0][1], delimiter) + "\n"
    heading = "CHANNEL" if document["metadata"]["transcription_config"].get("diarization") == "channel" else "SPEAKER"
    return "\n".join(f"{heading}: {label}\n{_join(items, delimiter)}\n" for label, items in turns)


def _label(item: dict[str, Any]) -> str:
    return item.get("channel") or item["alternatives"][0].get("speaker", "UU")


def _turns(results: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for item in results:
        if not turns or turns[-1][0] != _label(item):
            turns.append((_label(item), []))
        turns[-1][1].append(item)
    return turns or [("UU", [])]


def _join(items: list[dict[str, Any]], delimiter: str) -> str:
    text = ""
    for item in items:
        content = item["alternatives"][0]["content"]
        attached = item["type"] == "punctuation" and item.get("attaches_to") == "previous"
        text += content if attached or not text else delimiter + content
    return text


def render_srt(document: dict[str, Any]) -> str:
    """SubRip cues honouring output_config.srt_overrides (37 characters x 2 lines by default)."""
    overrides = (document["metadata"].get("output_config") or {}).get("srt_overrides") or {}
    width = int(overrides.get("max_line_length") or 37)
    max_lines = int(overrides.get("max_lines") or 2)
    delimiter = document["metadata"]["language_pack_info"]["word_delimiter"]
    cues = []
    for number, cue in enumerate(_cues(document["results"], delimiter, width, max_lines), start=1):
        lines = "\n".join(_join(line, delimiter) for line in cue)
        start, end = cue[0][0]["start_time"], cue[-1][-1]["end_time"]
        cues.append(f"{number}\n{_timestamp(start)} --> {_timestamp(end)}\n{lines}\n")
    return "\n".join(cues)


def _cues(results: list[dict[str, Any]], delimiter: str, width: int, max_lines: int) -> list[list[list[dict]]]:
    """Fill lines up to ``width`` characters; a cue ends when full, at a sentence end or a new speaker.

    Lines are filled with words together with the punctuation attached to them, so a comma never
    pushes a line past the width on its own and never starts a line.
    """
    cues: list[list[list[dict]]] = []
    current: list[list[dict]] = [[]]
    for chunk in _chunks(results):
        line = current[-1]
        if current[0] and _label(current[0][0]) != _label(chunk[0]):
            cues.append(current)
            current = [[]]
        elif line and len(_join(line + chunk, delimiter)) > width:
            if len(current) == max_lines:
                cues.append(current)
                current = [[]]
            else:
                current.append([])
        current[-1].extend(chunk)
        if chunk[-1].get("is_eos"):
            cues.append(current)
            current = [[]]
    if current[0]:
        cues.append(current)
    return cues


def _chunks(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each word with the punctuation that follows it."""
    chunks: list[list[dict[str, Any]]] = []
    for item in results:
        if item["type"] == "punctuation" and chunks:
            chunks[-1].append(item)
        else:
            chunks.append([item])
    return chunks


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d},{rest % 1000:03d}"
