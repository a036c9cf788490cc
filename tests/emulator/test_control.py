"""Test control under /_emulator/ and on the in-process handle: hold mode, finish, expire, deliveries."""

from __future__ import annotations

import pytest
import requests

from emulator import Emulator, NotRunning
from tests.emulator.support import AUTH, Receiver, submit_id, wait_for


def control(emu: Emulator, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{emu.base_url}/_emulator{path}", headers=AUTH, timeout=10, **kwargs)


def test_hold_mode_queues_and_delivers_on_demand(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(hold_notifications=True)
    config = [{"url": receiver.url("/a"), "contents": ["jobinfo"]}, {"url": receiver.url("/b"), "method": "put"}]
    job_id = submit_id(emu.url, notification_config=config)
    held = wait_for(lambda: len(emu.held()) == 2 and emu.held(), message="two held notifications")
    assert receiver.got() == []
    by_url = {item["url"]: item for item in held}
    assert by_url[receiver.url("/a")] | {"key": "k"} == {"key": "k", "job_id": job_id, "url": receiver.url("/a"),
                                                         "method": "POST", "status": "success", "attempt": 1,
                                                         "duplicate": False}

    first = control(emu, "POST", f"/held/{by_url[receiver.url('/a')]['key']}/duplicate")
    assert first.json() == {"outcome": 200} and len(emu.held()) == 2
    second = control(emu, "POST", f"/held/{by_url[receiver.url('/a')]['key']}/deliver")
    assert second.json() == {"outcome": 200} and len(emu.held()) == 1
    assert [r.path for r in receiver.got()] == ["/a", "/a"]

    dropped = control(emu, "POST", f"/held/{by_url[receiver.url('/b')]['key']}/drop")
    assert dropped.json() == {"dropped": by_url[receiver.url("/b")]["key"]}
    assert control(emu, "GET", "/held").json() == {"held": []}
    outcomes = [d["outcome"] for d in control(emu, "GET", "/deliveries").json()["deliveries"]]
    assert sorted(map(str, outcomes)) == ["200", "200", "dropped", "held", "held"]
    assert control(emu, "POST", "/held/nope/deliver").status_code == 404


def test_held_delivery_failure_is_reported_and_recorded(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(hold_notifications=True)
    receiver.answers["/hook"] = [500, 204]
    job_id = submit_id(emu.url, notification_config=[{"url": receiver.url(), "contents": []}])
    [item] = wait_for(lambda: emu.held(), message="held notification")
    assert emu.deliver(item["key"]) == {"outcome": 500}
    assert emu.held() == []
    assert emu.job(job_id)["errors"][-1]["message"].endswith("Response status: 500")
    with pytest.raises(KeyError):
        emu.deliver(item["key"])


def test_turning_hold_off_again_sends_normally(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator()
    control(emu, "PUT", "/faults", json={"hold_notifications": True})
    submit_id(emu.url, notification_config=[{"url": receiver.url(), "contents": []}])
    wait_for(lambda: emu.held(), message="held notification")
    emu.set_faults(hold_notifications=False)
    submit_id(emu.url, notification_config=[{"url": receiver.url(), "contents": []}])
    receiver.wait(1)
    assert len(emu.held()) == 1


def test_finish_and_expire_running_jobs(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(processing_seconds=3600)
    notifications = [{"url": receiver.url(), "contents": ["jobinfo"]}]
    done, rejected, natural = (submit_id(emu.url, notification_config=notifications) for _ in range(3))
    assert control(emu, "POST", f"/jobs/{done}/finish").json()["job"]["status"] == "done"
    answer = control(emu, "POST", f"/jobs/{rejected}/finish", json={"outcome": "rejected"}).json()
    assert answer["job"]["status"] == "rejected"
    assert emu.finish(natural)["status"] == "done"
    statuses = {r.query["id"][0]: r.query["status"][0] for r in receiver.wait(3)}
    assert statuses == {done: "success", rejected: "error", natural: "success"}

    again = control(emu, "POST", f"/jobs/{done}/finish", json={"outcome": "done"})
    assert again.status_code == 409
    with pytest.raises(NotRunning):
        emu.finish(done)
    assert control(emu, "POST", f"/jobs/{done}/finish", json={"outcome": "maybe"}).status_code == 400
    assert control(emu, "POST", "/jobs/unknown123/finish").status_code == 404

    expired = control(emu, "POST", f"/jobs/{done}/expire").json()["job"]
    assert expired["status"] == "expired"
    assert requests.get(f"{emu.url}/jobs/{done}", headers=AUTH, timeout=10).status_code == 410
    with pytest.raises(KeyError):
        emu.transcript_bytes(done)
    assert len(receiver.got()) == 3  # neither finishing twice nor expiring notifies again


def test_forced_done_overrides_a_natural_rejection(make_emulator) -> None:
    emu = make_emulator(processing_seconds=3600)
    job_id = submit_id(emu.url, b"not audio")
    assert emu.finish(job_id, outcome="done")["status"] == "done"
    assert emu.transcript_bytes(job_id)


def test_job_and_transcript_bytes_raise_key_error(make_emulator) -> None:
    emu = make_emulator(processing_seconds=3600)
    with pytest.raises(KeyError):
        emu.job("nosuchjob1")
    with pytest.raises(KeyError):
        emu.transcript_bytes("nosuchjob1")
    running = submit_id(emu.url)
    with pytest.raises(KeyError):
        emu.transcript_bytes(running)
