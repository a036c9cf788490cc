"""What the emulator needs to know about submitted media: its format, length and fingerprint.

The real service decodes the audio; the emulator only recognises containers by their magic bytes
(anything else is "undecodable" and the job is rejected), reads the exact duration of WAV and FLAC
files from their headers, and estimates it from the file size for compressed formats.
"""

from __future__ import annotations

import hashlib
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Typical bitrates (bytes per second) used to estimate the duration of compressed formats.
ESTIMATED_BYTES_PER_SECOND = {
    "mp3": 16_000,
    "aac": 16_000,
    "mp4": 16_000,
    "m4a": 16_000,
    "mpeg": 16_000,
    "ogg": 12_000,
    "flac": 88_200,
    "amr": 1_600,
}


@dataclass(frozen=True)
class MediaInfo:
    """Format (None = undecodable), duration in seconds (0.0 = no audio) and channel count."""

    kind: str | None
    seconds: float
    channels: int = 1

    @property
    def duration(self) -> int:
        """Whole seconds as the API reports them (rounded half up, so a 0.6 s clip is 1, not 0)."""
        return int(self.seconds + 0.5)


def sniff(head: bytes) -> str | None:
    """Name the container from the first bytes of a file, or None when nothing matches."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    prefixes = {b"fLaC": "flac", b"OggS": "ogg", b"#!AMR": "amr", b"ID3": "mp3", b"ADIF": "aac"}
    for prefix, kind in prefixes.items():
        if head.startswith(prefix):
            return kind
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:11] in {b"M4A", b"M4B"} else "mp4"
    if head[:3] == b"\x00\x00\x01" and head[3:4] in {b"\xba", b"\xb3"}:
        return "mpeg"
    return _sniff_frame_sync(head)


def _sniff_frame_sync(head: bytes) -> str | None:
    """Raw MPEG audio frames: ADTS AAC has layer bits 00, MP3 has a non-zero layer."""
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    if head[1] & 0xF6 == 0xF0:
        return "aac"
    return "mp3" if head[1] & 0x06 else None


def inspect(path: Path) -> MediaInfo:
    """Read just enough of the file to classify it and learn its duration."""
    with path.open("rb") as handle:
        head = handle.read(64)
    kind = sniff(head)
    if kind == "wav":
        seconds, channels = _wav_length(path)
        return MediaInfo(kind, seconds, channels)
    if kind == "flac":
        return MediaInfo(kind, *_flac_length(head, path))
    if kind is None:
        return MediaInfo(None, 0.0)
    return MediaInfo(kind, path.stat().st_size / ESTIMATED_BYTES_PER_SECOND[kind])


def _wav_length(path: Path) -> tuple[float, int]:
    """The real duration via the stdlib ``wave`` module; chunk walking covers formats it refuses."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            return (wav.getnframes() / rate if rate else 0.0), wav.getnchannels()
    except (wave.Error, EOFError):
        return _riff_length(path)


def _riff_length(path: Path) -> tuple[float, int]:
    """Duration from the 'fmt ' byte rate and the 'data' size (e.g. WAVE_FORMAT_EXTENSIBLE, mu-law)."""
    byte_rate, channels, data_size = 0, 1, 0
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(12)
        while len(header := handle.read(8)) == 8:
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                data_size = min(size, file_size - handle.tell())
                break
            body = handle.read(min(size, 16)) if chunk_id == b"fmt " else b""
            if len(body) >= 12:
                channels, byte_rate = struct.unpack("<xxHxxxxI", body[:12])
            handle.seek(size - len(body) + size % 2, 1)
    return (data_size / byte_rate if byte_rate else 0.0), max(channels, 1)


def _flac_length(head: bytes, path: Path) -> tuple[float, int]:
    """STREAMINFO (the mandatory first metadata block) holds the sample rate and total samples."""
    info = head[8:26]
    if len(info) < 18:
        return path.stat().st_size / ESTIMATED_BYTES_PER_SECOND["flac"], 1
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    samples = packed & 0xFFFFFFFFF
    if not rate or not samples:
        return path.stat().st_size / ESTIMATED_BYTES_PER_SECOND["flac"], channels
    return samples / rate, channels


def fingerprint(path: Path) -> str:
    """SHA-256 of the media; transcripts are seeded from it so equal audio gives equal words."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
