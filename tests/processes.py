"""Real processes for tests: a monitor started as the app starts it, and waiting on conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from pipeline.jobs import monitor
from tests.conftest import REPO


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_monitor(**env) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.jobs.monitor"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(monitor.is_alive, 30, "the monitor to take its lock")
    return process


def stop_monitor(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0  # a clean stop
    assert not monitor.is_alive()


@pytest.fixture
def running_monitor(request):
    process = start_monitor(**getattr(request, "param", {}))
    yield process
    if process.poll() is None:
        stop_monitor(process)
