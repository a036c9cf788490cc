"""Bounded resources: uploads stream to disk, temp files and threads are gone after stop()."""

from __future__ import annotations

import http.client
import json
import threading
import tracemalloc
import wave
from pathlib import Path

from emulator import Emulator, EmulatorOptions
from tests.emulator.support import API_KEY, AUTH, Receiver, job_config, submit_id, wait_for, wav_bytes


def write_long_wav(path: Path, seconds: int, rate: int = 16000) -> None:
    """A big WAV written a second at a time, so the test itself never holds it in memory."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        second = b"\x10\x00" * rate
        for _ in range(seconds):
            wav.writeframes(second)


def stream_upload(url: str, path: Path) -> tuple[int, dict]:
    """POST /v2/jobs with the file streamed from disk in 64 KiB blocks (requests would buffer it all)."""
    boundary = "emulator-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n{json.dumps(job_config())}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"data_file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/v2/jobs")
    connection.putheader("Authorization", AUTH["Authorization"])
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    connection.endheaders()
    connection.send(head)
    with path.open("rb") as source:
        while block := source.read(1 << 16):
            connection.send(block)
    connection.send(tail)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


def test_large_upload_streams_to_disk_with_flat_memory(make_emulator, tmp_path: Path) -> None:
    emu = make_emulator(processing_seconds=3600)
    audio = tmp_path / "long.wav"
    write_long_wav(audio, seconds=1800)  # 57.6 MB
    tracemalloc.start()
    try:
        status, body = stream_upload(emu.url, audio)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 201, body
    # Flat, not proportional to the upload: socket and parser buffers come and go (a few MB, more when the
    # machine is busy), but a buffered upload would need all 57.6 MB.
    assert peak < 16_000_000, f"peak Python memory during a 57.6 MB upload: {peak} bytes"
    stored = list(emu.service.upload_dir.iterdir())
    assert [path.stat().st_size for path in stored] == [audio.stat().st_size]
    assert emu.job(body["id"])["duration"] == 1800


def test_stop_deletes_uploads_and_joins_threads(tmp_path: Path, receiver: Receiver) -> None:
    before = set(threading.enumerate())
    options = EmulatorOptions(api_key=API_KEY, processing_seconds=0.05, upload_dir=str(tmp_path), seed=1,
                             notify_retry_delays=(60.0,))
    receiver.answers["/hook"] = [500]
    with Emulator(options) as emu:
        job_id = submit_id(emu.url, wav_bytes(1), notification_config=[{"url": receiver.url(), "contents": ["data"]}])
        receiver.wait(1)  # the first attempt failed; a retry is now pending for a minute
        upload_dir = emu.service.upload_dir
        assert upload_dir.parent == tmp_path and len(list(upload_dir.iterdir())) == 1
        assert emu.job(job_id)["status"] == "done"
    assert not upload_dir.exists() and list(tmp_path.iterdir()) == []
    leftover = [thread.name for thread in set(threading.enumerate()) - before]
    assert leftover == [], leftover


def test_rejected_upload_leaves_no_temp_file(emu: Emulator) -> None:
    import requests

    response = requests.post(f"{emu.url}/jobs", headers=AUTH, files={"data_file": ("a.wav", wav_bytes(1))},
                             data={"config": "{broken"}, timeout=10)
    assert response.status_code == 400
    assert list(emu.service.upload_dir.iterdir()) == []


def test_deleting_a_job_deletes_its_media_and_sends_no_notification(make_emulator, receiver: Receiver) -> None:
    import requests

    emu = make_emulator(processing_seconds=3600)
    job_id = submit_id(emu.url, notification_config=[{"url": receiver.url(), "contents": []}])
    assert len(list(emu.service.upload_dir.iterdir())) == 1
    requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, params={"force": "true"}, timeout=10)
    assert list(emu.service.upload_dir.iterdir()) == []
    other = submit_id(emu.url, notification_config=[{"url": receiver.url("/other"), "contents": []}])
    emu.finish(other)
    receiver.wait(1, "/other")  # notifications still work; the deleted job's never came
    wait_for(lambda: emu.deliveries())  # recorded once the receiver's answer is back, a moment after it got it
    assert receiver.got("/hook") == [] and [d["job_id"] for d in emu.deliveries()] == [other]
    wait_for(lambda: emu.job(job_id)["status"] == "deleted")
