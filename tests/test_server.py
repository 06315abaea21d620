"""The studio started as the README starts it listens on this machine only (127.0.0.1), never on the network."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import KEY_VARS, REPO, SHARED_MODELS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as the kernel writes them) of sockets listening on `port`, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def _other_address() -> str | None:
    """This machine's address on its network (the interface a packet out would leave by), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the route
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_studio_listens_on_this_machine_only(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env |= {"STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_MODELS_DIR": str(SHARED_MODELS)}
    env |= {"STUDIO_AUTOSTART_MONITOR": "0", "STUDIO_SECRETS_FILE": str(tmp_path / "no-secrets.toml")}
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "streamlit"), "run", "app.py", "--server.port", str(port)]
        + ["--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert process.poll() is None, "the studio did not start"
            assert time.monotonic() < deadline, "the studio did not listen within 60 s"
            time.sleep(0.2)
        # the people at this machine can open it ...
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as reply:
            assert reply.status == 200
        # ... and it listens on the loopback address only: 127.0.0.1, not 0.0.0.0 or ::
        assert _listening(port) == ["0100007F"]
        other = _other_address()
        if other:  # another machine on the network is refused
            with socket.socket() as sock, pytest.raises(OSError):
                sock.settimeout(5)
                sock.connect((other, port))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
