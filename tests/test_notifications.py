"""Notifications: a job's end reaches a real webhook server on 127.0.0.1 (from the monitor's pass), a failing
webhook is retried three times and the job ends as it did, no key ever travels, and the open page shows a toast
(AppTest, from app.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline import jobs, notifications
from pipeline.jobs import foreground
from pipeline.jobs.monitor import Monitor
from tests.test_pages import open_app

KEY = "sk-test-DO-NOT-SEND-4f9a1c2b"


class Hook:
    """A webhook receiver: records every POST (path, JSON body, raw bytes) and answers `status`."""

    def __init__(self, status: int = 200):
        self.status, self.received = status, []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append({"path": self.path, "body": json.loads(raw), "raw": raw})
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/secret-path"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(monkeypatch):
    receiver = Hook()
    monkeypatch.setenv("STUDIO_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("STUDIO_PUBLIC_URL", "https://studio.example.com/")
    yield receiver
    receiver.close()


def training_like(ctx, params):
    """A job that logs a falling loss, then ends as `params` says."""
    ctx.report_progress(0, 3, unit="steps")
    for step in (1, 2, 3):
        ctx.log_metric(step, loss=2.0 / step, val_loss=2.5 / step)
        ctx.report_progress(step, 3, unit="steps")
    if params.get("fail_with"):
        raise RuntimeError(params["fail_with"])


def run_job(name: str = "SFT collab-v1", **params) -> int:
    """A job run here, start to end, through the job system (claim, run folder, ingest of its last word)."""
    job = jobs.submit("probe", params, name=name, run_here=True)
    with contextlib.suppress(RuntimeError):  # a job told to fail raises here; its recorded end is what is tested
        foreground.run(job, training_like, lambda *_: None)
    return job.id


def quick_monitor() -> Monitor:
    monitor = Monitor(use_watchdog=False)
    monitor.notifier = notifications.Notifier(backoff_s=0.01)
    return monitor


def test_a_job_end_is_posted_to_the_webhook_by_the_monitor_with_the_expected_json(hook):
    monitor = quick_monitor()
    monitor.step()  # nothing ended yet: nothing sent
    job_id = run_job()
    monitor.step()
    [got] = hook.wait_for(1)
    body = got["body"]
    assert got["path"] == "/hooks/T000/secret-path"
    assert body["job"] | {"started_at": None, "finished_at": None} == {
        "id": job_id, "kind": "probe", "kind_label": "Worker check", "name": "SFT collab-v1", "status": "succeeded",
        "error": None, "started_by": jobs.get(job_id).started_by, "attempt": 1, "started_at": None, "finished_at": None,
    }  # fmt: skip
    assert body["figures"]["progress"] == {"done": 3, "total": 3, "unit": "steps"}
    assert body["figures"]["final_loss"] == pytest.approx(2.0 / 3) and body["figures"]["steps"] == 3
    assert body["figures"]["final_val_loss"] == pytest.approx(2.5 / 3)
    assert body["link"] == f"https://studio.example.com/monitor?job={job_id}"
    assert body["text"].startswith(f"Persona Studio: job {job_id} (Worker check: SFT collab-v1) *succeeded*")
    assert "final loss 0.667" in body["text"] and f"<{body['link']}|open>" in body["text"]
    # each end is posted once, even by a monitor started again
    monitor.step()
    quick_monitor().step()
    time.sleep(0.3)
    assert len(hook.received) == 1
    monitor.notifier.close()


def test_a_failing_webhook_is_retried_three_times_and_the_job_still_ends_as_it_did(hook, caplog):
    hook.status = 500
    monitor = quick_monitor()
    monitor.step()
    job_id = run_job(fail_with="out of memory at step 3")
    with caplog.at_level(logging.WARNING, logger="pipeline.monitor"):
        monitor.step()
        tries = hook.wait_for(4)
        monitor.notifier.close()
    assert len(tries) == 4  # the first try and three retries
    assert all(t["body"]["job"]["status"] == "failed" for t in tries)
    assert "out of memory at step 3" in tries[0]["body"]["job"]["error"]
    assert jobs.get(job_id).status == "failed" and "out of memory" in jobs.get(job_id).error
    assert "not delivered after 4 tries (HTTP 500)" in caplog.text
    assert "secret-path" not in caplog.text  # a webhook's path is its secret: never logged


def test_a_refused_connection_is_retried_and_logged_without_raising(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="pipeline.monitor"):
        delivered = notifications.post(f"http://127.0.0.1:{port}/x", {"job": {"id": 1}}, backoff_s=0.01)
    assert delivered is False
    assert caplog.text.count("retrying") == 3 and "not delivered after 4 tries" in caplog.text


def test_no_key_from_the_environment_reaches_the_payload(hook, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monitor = quick_monitor()
    monitor.step()
    run_job(name="OpenAI fine-tuning", fail_with=f"provider said: invalid key {KEY}")
    monitor.step()
    [got] = hook.wait_for(1)
    monitor.notifier.close()
    assert KEY.encode() not in got["raw"]
    assert "invalid key ***" in got["body"]["job"]["error"] and "invalid key ***" in got["body"]["text"]


def test_without_a_webhook_nothing_is_sent_and_nothing_is_kept(monkeypatch):
    monkeypatch.delenv("STUDIO_WEBHOOK_URL", raising=False)
    monitor = quick_monitor()
    run_job()
    monitor.step()
    assert monitor.notifier.tick() == []


def test_a_toast_appears_on_the_open_page_when_a_job_ends():
    at = open_app("pages/datasets.py")
    assert not at.toast  # jobs that ended before the page opened are not announced
    job_id = run_job(name="SFT collab-v1")
    at.run()
    assert not at.exception
    [toast] = [t for t in at.toast if f"Job {job_id}" in t.value]
    assert "(Worker check: SFT collab-v1) succeeded" in toast.value and "final loss 0.667" in toast.value
    at.run()
    assert not [t for t in at.toast if f"Job {job_id}" in t.value]  # each end once per open page
