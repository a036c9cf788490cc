"""Setting up: a fresh database, the audio files, the servers, and the client.py runs the files are split into."""

from __future__ import annotations

import array
import contextlib
import math
import os
import random
import wave
from collections.abc import Iterator
from pathlib import Path

from tests.integration.support import Stack, free_port, fresh_schema
from tests.soak.options import CHUNK_SIZE


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """A database nobody else uses: a file in the work directory, or a new PostgreSQL schema (selected with
    `options=-csearch_path`) that is dropped afterwards whatever happens."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'jobs.db'}"
        return
    with fresh_schema(postgres_url, prefix="soak") as url:
        yield url


def postgres_problem(postgres_url: str) -> str | None:
    """Why the PostgreSQL server cannot be used, in one line, or None: a soak that cannot start should say
    so before it creates anything, not with a traceback."""
    import psycopg

    try:
        psycopg.connect(postgres_url, connect_timeout=5).close()
    except psycopg.Error as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"no PostgreSQL at {postgres_url}: {lines[-1] if lines else type(error).__name__}"
    return None


def make_audio(directory: Path, count: int, rng: random.Random) -> list[Path]:
    """`count` WAV files with distinct names (hard links to four clips of 1 to 8 seconds): the name
    is the job's data_name, which is how the killed client's job is recognised, and short clips keep the
    uploads, the emulator's copies and the transcripts small."""
    directory.mkdir(parents=True, exist_ok=True)
    clips = []
    for index, seconds in enumerate((1.0, 2.0, 4.0, 8.0)):
        clip = directory / f"clip-{index}.wav"
        samples = array.array("h", (rng.randint(-4000, 4000) for _ in range(int(8000 * seconds))))
        with wave.open(str(clip), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(samples.tobytes())
        clips.append(clip)
    files = []
    for number in range(count):
        path = directory / f"soak-{number:04d}.wav"
        os.link(clips[rng.randrange(len(clips))], path)
        files.append(path)
    return files


def start_server(server: Stack, transcripts: Path) -> None:
    """A real `python server.py` (gunicorn, two workers), every server writing into the one shared
    transcripts directory, as several servers behind a load balancer would on a shared mount (with
    `--storage s3`, into one bucket; the directory is then only their spool)."""
    server.start_server(workers=2, TRANSCRIPTS_DIR=transcripts)


def start_servers(stack: Stack, count: int) -> list[Stack]:
    """`count` server.py processes on their own ports and in their own directories (so each has its own
    log), sharing the database and the transcripts directory with `stack`."""
    servers = [Stack(tmp=stack.tmp / f"server-{n + 1}", emulator=stack.emulator, database_url=stack.database_url,
                     server_port=free_port(), storage=stack.storage) for n in range(count)]
    for server in servers:
        server.tmp.mkdir(parents=True, exist_ok=True)
        start_server(server, stack.transcripts)
    stack.server_port = servers[0].server_port
    return servers


def chunked(files: list[Path], servers: int) -> list[list[Path]]:
    """Split the files into client.py runs of about CHUNK_SIZE, a multiple of `servers` of them, so that
    every server gets the same number of runs (they take turns)."""
    runs = max(1, math.ceil(len(files) / CHUNK_SIZE))
    runs = math.ceil(runs / servers) * servers
    size = math.ceil(len(files) / runs) if files else 0
    return [files[start:start + size] for start in range(0, len(files), size)] if size else []
