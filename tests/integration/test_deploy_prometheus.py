"""deploy/prometheus: the alert rules pass promtool's own tests, and a real Prometheus scrapes a real server.py."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.support import ROOT, Stack, free_port, running, wait_for

RULES = ROOT / "deploy" / "prometheus"
pytestmark = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool missing: make test installs it")


def test_alert_rules_are_valid_and_pass_their_tests() -> None:
    checked = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@contextlib.contextmanager
def prometheus(tmp: Path, target_port: int) -> Iterator[str]:
    """Our own Prometheus on a free loopback port, scraping only `target_port` every second, with our rules."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{RULES / 'alerts.yml'}"]
scrape_configs:
  - job_name: transcribe
    static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
""")
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(["prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                                f"--storage.tsdb.path={tmp / 'tsdb'}"], stdout=log, stderr=subprocess.STDOUT)
    with running(process):
        yield f"http://127.0.0.1:{port}"


def query(base: str, expression: str) -> list[dict[str, object]]:
    with contextlib.suppress(requests.RequestException):
        answer = requests.get(f"{base}/api/v1/query", params={"query": expression}, timeout=2).json()
        return answer["data"]["result"] if answer.get("status") == "success" else []
    return []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_prometheus_scrapes_server_py(stack: Stack, tmp_path: Path) -> None:
    stack.start_server(workers=2)
    for _ in range(3):
        assert stack.notify("0123456789", secret="wrong-secret-0123456789").status_code == 401
    with prometheus(tmp_path, stack.server_port) as base:
        expression = 'sum(transcribe_notifications_total{outcome="unauthenticated"})'
        result = wait_for(lambda: query(base, expression), timeout=60, interval=0.5,
                          message=f"Prometheus to answer {expression}")
        assert float(result[0]["value"][1]) == 3  # type: ignore[index]
        up = wait_for(lambda: query(base, "transcribe_database_up"), timeout=30, interval=0.5, message="up")
        assert float(up[0]["value"][1]) == 1  # type: ignore[index]
        silent = wait_for(lambda: query(base, 'ALERTS{alertname="TranscribeReconcilerSilent"}'), timeout=30,
                          interval=0.5, message="the silence alert, with no pass ever recorded, to be pending")
        assert silent[0]["metric"]["alertstate"] == "pending"  # type: ignore[index]
