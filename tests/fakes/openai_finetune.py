"""OpenAI's fine-tuning API on 127.0.0.1, as documented: files, jobs, events, cancel, result files.

A job walks validating_files → queued → running → succeeded, one status per retrieve, adding a
metrics event per step while it runs; `outcome` makes it fail with a provider error instead, and
`reject_upload` / a key of "sk-bad" give the documented 400 and 401 errors.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_server import LocalServer

STEPS = 4


class FakeOpenAIFineTuning(LocalServer):
    def __init__(
        self, outcome: str = "succeeded", reject_upload: str | None = None, allowed_models=None, valid_losses=None
    ):
        self.outcome = outcome  # succeeded | failed
        self.valid_losses = valid_losses  # one validation loss per step, instead of one every second step
        self.reject_upload = reject_upload
        self.allowed_models = allowed_models or {"gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14"}
        self.jobs: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    # --- the API ------------------------------------------------------------------------------

    def upload(self, body: bytes) -> tuple[int, dict]:
        if self.reject_upload:
            return 400, _error(self.reject_upload, "invalid_request_error", "file", "invalid_file_format")
        name = re.search(rb'filename="([^"]+)"', body)
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = {
            "object": "file", "id": file_id, "bytes": len(body), "created_at": int(time.time()),
            "filename": name.group(1).decode() if name else "upload.jsonl", "purpose": "fine-tune",
            "status": "processed", "expires_at": None, "status_details": None,
        }  # fmt: skip
        return 200, self.files[file_id]

    def create(self, body: dict) -> tuple[int, dict]:
        if body.get("model") not in self.allowed_models:
            message = f"Model {body.get('model')} is not available for fine-tuning or does not exist."
            return 400, _error(message, "invalid_request_error", "model", "model_not_available")
        job_id = f"ftjob-{len(self.jobs) + 1:04d}"
        self.jobs[job_id] = {
            "object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": int(time.time()),
            "finished_at": None, "fine_tuned_model": None, "organization_id": "org-test", "result_files": [],
            "status": "validating_files", "validation_file": body.get("validation_file"),
            "training_file": body["training_file"], "hyperparameters": body.get("method", {}).get("supervised", {})
            .get("hyperparameters", {"n_epochs": "auto"}), "trained_tokens": None, "error": None,
            "seed": body.get("seed") or 42, "suffix": body.get("suffix"), "estimated_finish": None,
            "integrations": [], "metadata": None, "method": body.get("method") or {"type": "supervised"},
            "_events": [], "_step": 0,
        }  # fmt: skip
        self._event(job_id, "message", "Validating training file: " + body["training_file"])
        return 200, _public(self.jobs[job_id])

    def retrieve(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, _error(f"No such fine-tuning job: {job_id}", "invalid_request_error", "id", None)
        if job["status"] == "validating_files":
            job["status"] = "queued"
            self._event(job_id, "message", "Files validated, moving job to queued state")
        elif job["status"] == "queued":
            job["status"] = "running"
            self._event(job_id, "message", "Fine-tuning job started")
        elif job["status"] == "running":
            if self.outcome == "failed" and job["_step"] == 2:
                job["status"], job["finished_at"] = "failed", int(time.time())
                job["error"] = {
                    "code": "exceeded_quota",
                    "param": None,
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                }
                self._event(job_id, "message", "Fine-tuning job failed", level="error")
            elif job["_step"] < STEPS:
                job["_step"] += 1
                step = job["_step"]
                data = {
                    "step": step,
                    "train_loss": round(2.0 / step, 4),
                    "total_steps": STEPS,
                    "train_mean_token_accuracy": 0.5 + step / 20,
                }
                if self.valid_losses:
                    data["valid_loss"] = self.valid_losses[step - 1]
                elif step % 2 == 0:
                    data["valid_loss"] = round(2.2 / step, 4)
                self._event(job_id, "metrics", f"Step {step}/{STEPS}: training loss={data['train_loss']}", data)
            else:
                job["status"], job["finished_at"] = "succeeded", int(time.time())
                job["fine_tuned_model"] = f"ft:{job['model']}:org-test:{job['suffix'] or 'model'}:AbC123"
                job["trained_tokens"] = 12345
                job["result_files"] = ["file-result"]
                self._event(job_id, "message", "The job has successfully completed")
        return 200, _public(job)

    def events(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs[job_id]
        return 200, {"object": "list", "data": list(reversed(job["_events"])), "has_more": False}

    def cancel(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs[job_id]
        job["status"] = "cancelled"
        self._event(job_id, "message", "Fine-tuning job cancelled")
        return 200, _public(job)

    def result_csv(self) -> bytes:
        valid = self.valid_losses or [(2.2 / s) if s % 2 == 0 else "" for s in range(1, STEPS + 1)]
        rows = [f"{s},{2.0 / s:.4f},{0.5 + s / 20:.3f},{valid[s - 1]},"
                for s in range(1, STEPS + 1)]  # fmt: skip
        return ("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n" + "\n".join(rows)).encode()

    def _event(self, job_id: str, kind: str, message: str, data=None, level: str = "info") -> None:
        events = self.jobs[job_id]["_events"]
        events.append({"object": "fine_tuning.job.event", "id": f"ftevent-{job_id}-{len(events) + 1}",
                       "created_at": int(time.time()), "level": level, "message": message, "data": data or {},
                       "type": kind})  # fmt: skip

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def _send(self, status: int, payload, content_type: str = "application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0].removeprefix("/v1")
                with fake._lock:
                    fake.requests.append((method, path))
                    if self.headers.get("Authorization") == "Bearer sk-bad":
                        return self._send(
                            401,
                            _error(
                                "Incorrect API key provided: sk-bad. You can find your API key "
                                "at https://platform.openai.com/account/api-keys.",
                                "invalid_request_error",
                                None,
                                "invalid_api_key",
                            ),
                        )
                    if method == "POST" and path == "/files":
                        return self._send(*fake.upload(body))
                    if method == "POST" and path == "/fine_tuning/jobs":
                        return self._send(*fake.create(json.loads(body)))
                    match = re.fullmatch(r"/fine_tuning/jobs/([\w-]+)(/events|/cancel)?", path)
                    if match and method == "GET" and not match.group(2):
                        return self._send(*fake.retrieve(match.group(1)))
                    if match and method == "GET" and match.group(2) == "/events":
                        return self._send(*fake.events(match.group(1)))
                    if match and method == "POST" and match.group(2) == "/cancel":
                        return self._send(*fake.cancel(match.group(1)))
                    if method == "GET" and path == "/files/file-result/content":
                        return self._send(200, fake.result_csv(), "text/csv")
                return self._send(404, _error(f"Unknown path {path}", "invalid_request_error", None, None))

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        return Handler


def _error(message: str, kind: str, param, code) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}
