"""`make demo` is the front door: it must keep working, so it runs here too, as a user would run it."""

from __future__ import annotations

import os
import subprocess

from tests import RUNTIME_PYTHON
from tests.integration.support import ROOT


def test_the_demo_runs_the_whole_flow() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHMATICS_", "WEBHOOK_", "DATABASE_URL"))}
    result = subprocess.run([RUNTIME_PYTHON, "demo.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Authorization: Bearer v1." in out  # the job's own token, never the secret
    assert "checked 1, recovered 1, repaired 0, still running 0, failed 0" in out
    assert 'transcribe_notifications_total{code="200",outcome="done"}' in out
    assert out.count("took transcript.ready for job") == 2  # each finished job handed to the example consumer
    assert 'transcribe_handoff_deliveries_total{result="delivered"} 2.0' in out
