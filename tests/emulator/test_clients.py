"""The official Python clients, used for real against the emulator (library calls and the CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from emulator import Emulator
from tests import RUNTIME_PYTHON
from tests.emulator.support import API_KEY, Receiver, wait_for, wav_bytes

VENV_BIN = Path(RUNTIME_PYTHON).parent  # speechmatics-python, a runtime requirement, installs its CLI there


@pytest.fixture
def audio_file(tmp_path: Path) -> Path:
    path = tmp_path / "meeting.wav"
    path.write_bytes(wav_bytes(6, tone=42))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME, so no ~/.speechmatics/config of the machine leaks into the clients."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_speechmatics_python_batch_client(emu: Emulator, audio_file: Path, home: Path) -> None:
    from speechmatics.batch_client import BatchClient
    from speechmatics.exceptions import JobNotFoundException
    from speechmatics.models import BatchTranscriptionConfig, ConnectionSettings

    settings = ConnectionSettings(url=emu.url, auth_token=API_KEY)
    with BatchClient(settings) as client:
        job_id = client.submit_job(str(audio_file), BatchTranscriptionConfig(language="en"))
        status = client.check_job_status(job_id)
        assert status["job"]["id"] == job_id and status["job"]["duration"] == 6
        with pytest.raises(JobNotFoundException):
            client.get_job_result(job_id)  # still running: the API's 404
        wait_for(lambda: client.check_job_status(job_id)["job"]["status"] == "done", message="done")
        transcript = client.get_job_result(job_id, "json-v2")
        assert transcript["job"]["data_name"] == "meeting.wav"
        assert transcript == json.loads(emu.transcript_bytes(job_id))
        txt = client.get_job_result(job_id, "txt")
        assert txt and txt.split()[0] == transcript["results"][0]["alternatives"][0]["content"]
        assert client.get_job_result(job_id, "srt").startswith("1\n00:00:")
        assert [job["id"] for job in client.list_jobs()] == [job_id]
        tuple_job = client.submit_job(("bytes.wav", wav_bytes(1)), {"type": "transcription",
                                                                    "transcription_config": {"language": "de"}})
        assert client.delete_job(tuple_job, force=True) == f"Job {tuple_job} deleted"
        assert client.delete_job(job_id) == f"Job {job_id} deleted"
        with pytest.raises(JobNotFoundException):
            client.check_job_status("nosuchjob0")


def test_speechmatics_python_wait_for_completion_with_server_side_wait(make_emulator, audio_file: Path,
                                                                         home: Path) -> None:
    from speechmatics.batch_client import BatchClient
    from speechmatics.models import BatchTranscriptionConfig, ConnectionSettings

    emu = make_emulator(processing_seconds=0.3, default_wait_seconds=5)
    with BatchClient(ConnectionSettings(url=emu.url, auth_token=API_KEY)) as client:
        job_id = client.submit_job(str(audio_file), BatchTranscriptionConfig(language="en"))
        text = client.wait_for_completion(job_id, "txt")
    assert text.strip() and emu.job(job_id)["status"] == "done"


def test_speechmatics_cli_transcribes_a_file(make_emulator, audio_file: Path, home: Path) -> None:
    emu = make_emulator(processing_seconds=0.3, default_wait_seconds=5)
    env = {**os.environ, "HOME": str(home)}
    result = subprocess.run(
        [str(VENV_BIN / "speechmatics"), "batch", "transcribe", "--url", emu.url, "--auth-token", API_KEY,
         "--output-format", "txt", str(audio_file)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    [job_id] = emu.service.jobs.collect(lambda job: job.id)
    assert f"Job submission successful. ID: {job_id}" in result.stdout
    job = emu.job(job_id)
    assert job["status"] == "done" and job["data_name"] == "meeting.wav"
    first_word = json.loads(emu.transcript_bytes(job_id))["results"][0]["alternatives"][0]["content"]
    assert f"\n{first_word} " in result.stdout and "meeting.wav completed!" in result.stdout
    assert emu.stats()["requests"]["POST /v2/jobs"] == 1


def test_speechmatics_cli_reports_a_bad_key(emu: Emulator, audio_file: Path, home: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "speechmatics"), "batch", "submit", "--url", emu.url, "--auth-token", "wrong",
         str(audio_file)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(home)}, check=False,
    )
    assert result.returncode != 0 and emu.service.jobs.collect(lambda job: job.id) == []


def test_speechmatics_batch_sync_client(emu: Emulator, audio_file: Path, receiver: Receiver) -> None:
    from speechmatics.batch import (
        Client,
        FormatType,
        JobConfig,
        JobStatus,
        JobType,
        NotificationConfig,
        TranscriptionConfig,
        TranscriptNotReadyError,
    )

    config = JobConfig(type=JobType.TRANSCRIPTION, transcription_config=TranscriptionConfig(language="en"),
                       notification_config=[NotificationConfig(url=receiver.url(), contents=["jobinfo"])])
    with Client(api_key=API_KEY, url=emu.url) as client:
        job = client.submit_job(str(audio_file), config=config)
        assert job.status == JobStatus.RUNNING
        with pytest.raises(TranscriptNotReadyError):
            client.get_transcript(job.id, wait=0)
        info = wait_for(lambda: (i := client.get_job_info(job.id, wait=0)).status == JobStatus.DONE and i)
        assert info.data_name == "meeting.wav" and info.duration == 6
        assert info.config.notification_config[0].url == receiver.url()
        transcript = client.get_transcript(job.id)
        assert transcript.job.id == job.id and transcript.results
        assert client.get_transcript(job.id, format_type=FormatType.TXT).strip()
        assert client.get_transcript(job.id, format_type=FormatType.SRT).startswith("1\n")
        assert [j.id for j in client.list_jobs(limit=10)] == [job.id]
        client.delete_job(job.id)
        assert client.list_jobs() == []
    [request] = receiver.wait(1)
    assert request.json()["id"] == job.id


def test_speechmatics_batch_async_client(make_emulator, audio_file: Path) -> None:
    from speechmatics.batch import AsyncClient, FormatType, JobError, JobStatus, TranscriptionConfig

    emu = make_emulator(processing_seconds=3600)

    async def scenario() -> None:
        async with AsyncClient(api_key=API_KEY, url=emu.url) as client:
            job = await client.submit_job(str(audio_file), transcription_config=TranscriptionConfig(language="en"))
            with pytest.raises(JobError, match="force=True"):
                await client.delete_job(job.id)
            emu.finish(job.id)
            info = await client.get_job_info(job.id)
            assert info.status == JobStatus.DONE
            text = await client.wait_for_completion(job.id, format_type=FormatType.TXT, min_polling_interval=0.1)
            assert text.strip()
            transcript = await client.get_transcript(job.id)
            assert transcript.metadata.type == "transcription"
            assert [j.id for j in await client.list_jobs()] == [job.id]
            other = await client.submit_job(str(audio_file))
            await client.delete_job(other.id, force=True)
            assert [j.status for j in await client.list_jobs()] == [JobStatus.DONE]

    asyncio.run(scenario())


def test_speechmatics_batch_transcribe_with_wait(make_emulator, audio_file: Path) -> None:
    from speechmatics.batch import Client

    emu = make_emulator(processing_seconds=0.3)
    with Client(api_key=API_KEY, url=emu.url) as client:
        transcript = client.transcribe(str(audio_file), wait=10)
    assert transcript.results and emu.stats()["requests"] == {"POST /v2/jobs": 1}


def test_speechmatics_batch_auth_error(emu: Emulator, audio_file: Path) -> None:
    from speechmatics.batch import AuthenticationError, Client

    with Client(api_key="wrong", url=emu.url) as client, pytest.raises(AuthenticationError):
        client.list_jobs()
