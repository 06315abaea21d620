"""A Ray head node of a test's (or a benchmark's) own on 127.0.0.1: `ray start --head --block` with every port
chosen free and its files in a short temporary folder; stopped, and anything of it still alive killed, at the end.

It runs with a node's environment: this project's virtualenv first on its PATH (as a node whose `ray start` ran
in an activated virtualenv), none of the studio's settings (STUDIO_*), no keys and no DATABASE_URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Head:
    """A Ray head node with `cpus` CPUs and no GPU: `address` is its dashboard (the Jobs API), `client` a
    JobSubmissionClient for it."""

    def __init__(self, cpus: int = 2) -> None:
        names = ["port", "dashboard-port", "node-manager-port", "object-manager-port", "dashboard-agent-grpc-port",
                 "dashboard-agent-listen-port", "metrics-export-port", "runtime-env-agent-port",
                 "ray-client-server-port"]  # fmt: skip
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.address = f"http://127.0.0.1:{ports['dashboard-port']}"
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # unix sockets need a short path
        node_env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("STUDIO_", "RAY_"))
            and not name.endswith("_API_KEY")
            and name not in ("DATABASE_URL", "PYTEST_CURRENT_TEST")
        }
        node_env |= {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's python
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
                   "--node-ip-address", "127.0.0.1", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                   "--num-cpus", str(cpus), "--num-gpus", "0", "--temp-dir", str(self.temp)]  # fmt: skip
        command += [part for name, port in ports.items() for part in (f"--{name}", str(port))]
        self.log = open(self.temp / "head.out", "wb")  # noqa: SIM115 - open for the head's whole life
        self.process = subprocess.Popen(
            command, env=node_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while (client := self._connect()) is None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                output = (self.temp / "head.out").read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"the Ray head did not answer within 120 s:\n{output}")
            time.sleep(0.5)
        self.client = client

    def _connect(self):
        from ray.job_submission import JobSubmissionClient

        try:
            return JobSubmissionClient(self.address)
        except ConnectionError:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # ray start --block drains the node and stops what it started
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for pid in processes_naming(str(self.temp)):  # anything of this head's still alive: only ours
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)

    def status(self, submission: str) -> str:
        return str(self.client.get_job_status(submission))


def command_lines() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
    return found


def processes_naming(text: str) -> list[int]:
    return [pid for pid, argv in command_lines().items() if any(text in arg for arg in argv) and pid != os.getpid()]
