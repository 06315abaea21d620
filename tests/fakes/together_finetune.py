"""Together's fine-tuning API on 127.0.0.1, as its SDK's types document it.

Upload: POST /v1/files answers 302 with the upload URL and file id, the file is PUT there, and
POST /v1/files/{id}/preprocess confirms it. A job walks pending → queued → running → completed
(one status per retrieve), with events and per-step metrics; `outcome="error"` ends it in error,
an unknown model is refused by the model-limits call, `credit` under the $0.87 estimate is
refused by the price estimate, and a key of "bad-key" gets a 401.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.fakes.local_server import LocalServer

STEPS = 4
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


class FakeTogetherFineTuning(LocalServer):
    def __init__(self, outcome: str = "completed", models=(MODEL,), credit: float = 100.0):
        self.outcome = outcome
        self.credit = credit
        self.models = set(models)
        self.jobs: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self.uploads: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def limits(self, model: str) -> tuple[int, dict]:
        if model not in self.models:
            return 404, {
                "error": {"message": f"Model {model} is not available for fine-tuning", "type": "invalid_request_error"}
            }
        return 200, {
            "model_name": model, "default_gradient_accumulation_steps": 1, "max_learning_rate": 1.0,
            "min_learning_rate": 1e-8, "max_num_checkpoints": 10, "max_num_epochs": 20, "max_num_evals": 100,
            "max_seq_length_dpo": 8192, "max_seq_length_sft": 8192, "min_max_seq_length": 512,
            "merge_output_lora": False, "supports_full_training": True, "supports_reasoning": False,
            "supports_tools": True, "supports_vision": False,
            "lora_training": {"default_rank": 16, "max_batch_size": 32, "max_batch_size_dpo": 16, "max_rank": 64,
                              "min_batch_size": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "full_training": {"max_batch_size": 32, "max_batch_size_dpo": 16, "min_batch_size": 8},
        }  # fmt: skip

    def create(self, body: dict) -> tuple[int, dict]:
        self.created.append(body)
        job_id = f"ft-{len(self.jobs) + 1:04d}"
        self.jobs[job_id] = {
            "id": job_id, "status": "pending", "user_id": "user-test", "model": body.get("model"),
            "training_file": body.get("training_file"), "validation_file": body.get("validation_file"),
            "n_epochs": body.get("n_epochs"), "learning_rate": body.get("learning_rate"), "suffix": body.get("suffix"),
            "created_at": "2026-11-26T12:00:00Z", "_step": 0, "_events": [],
        }  # fmt: skip
        self._event(job_id, "job_pending", "Fine-tune request created")
        return 200, _public(self.jobs[job_id])

    def retrieve(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs[job_id]
        if job["status"] == "pending":
            job["status"] = "queued"
        elif job["status"] == "queued":
            job["status"] = "running"
            self._event(job_id, "training_start", "Training started")
        elif job["status"] == "running":
            if self.outcome == "error" and job["_step"] == 2:
                job["status"] = "error"
                self._event(job_id, "job_error", "Training failed: the training file has no valid examples", "error")
            elif job["_step"] < STEPS:
                job["_step"] += 1
                self._event(job_id, "checkpoint_save", f"Step {job['_step']} done", step=job["_step"])
            else:
                job["status"] = "completed"
                job["model_output_name"] = f"user-test/{job['model'].split('/')[-1]}-{job['suffix']}-a1b2c3"
                job["token_count"] = 4321
                self._event(job_id, "job_complete", "Job finished")
        return 200, _public(job)

    def metrics(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs[job_id]
        rows = []
        for step in range(1, job["_step"] + 1):
            rows.append({"global_step": step, "train/loss": round(1.5 / step, 4), "train/learning_rate": 1e-5})
            if step % 2 == 0:
                rows.append({"global_step": step, "eval/loss": round(1.7 / step, 4)})
        return 200, {"metrics": rows}

    def _event(self, job_id: str, kind: str, message: str, level: str = "info", step: int | None = None) -> None:
        event = {"object": "fine-tune-event", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "message": message,
                 "type": kind, "level": level}  # fmt: skip
        if step is not None:
            event |= {"step": step, "total_steps": STEPS}
        self.jobs[job_id]["_events"].append(event)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def _send(self, status: int, payload=None, headers: dict | None = None):
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                path = url.path
                with fake._lock:
                    fake.requests.append((method, path))
                    if path.startswith("/v1/") and self.headers.get("Authorization") == "Bearer bad-key":
                        return self._send(
                            401, {"error": {"message": "Invalid API key provided", "type": "invalid_api_key"}}
                        )
                    if method == "POST" and path == "/v1/files":
                        file_id = f"file-{len(fake.files) + 1:04d}"
                        name = re.search(rb'name="file_name"\r\n\r\n([^\r]+)', body)
                        fake.files[file_id] = {"filename": name.group(1).decode() if name else "upload.jsonl"}
                        return self._send(
                            302, None, {"Location": f"{fake.root}/upload/{file_id}", "X-Together-File-Id": file_id}
                        )
                    if method == "PUT" and path.startswith("/upload/"):
                        fake.uploads[path.rsplit("/", 1)[1]] = body
                        return self._send(200, {})
                    match = re.fullmatch(r"/v1/files/([\w-]+)/preprocess", path)
                    if method == "POST" and match:
                        file_id = match.group(1)
                        name = fake.files[file_id]["filename"]
                        return self._send(200, {"id": file_id, "bytes": len(fake.uploads.get(file_id, b"")),
                                                "created_at": int(time.time()), "filename": name,
                                                "FileType": "jsonl", "object": "file", "purpose": "fine-tune",
                                                "processing_status": "COMPLETED"})  # fmt: skip
                    if method == "GET" and path == "/v1/fine-tunes/models/limits":
                        return self._send(*fake.limits(parse_qs(url.query).get("model_name", [""])[0]))
                    if method == "POST" and path == "/v1/fine-tunes/estimate-price":
                        return self._send(200, {"estimation_available": True,
                                                "allowed_to_proceed": fake.credit >= 0.87,
                                                "estimated_total_price": 0.87, "estimated_train_token_count": 3000,
                                                "estimated_eval_token_count": 0,
                                                "user_limit": fake.credit})  # fmt: skip
                    if method == "POST" and path == "/v1/fine-tunes":
                        return self._send(*fake.create(json.loads(body)))
                    match = re.fullmatch(r"/v1/fine-tunes/([\w-]+)(/events|/metrics|/cancel)?", path)
                    if match and method == "GET" and not match.group(2):
                        return self._send(*fake.retrieve(match.group(1)))
                    if match and match.group(2) == "/events":
                        return self._send(200, {"data": fake.jobs[match.group(1)]["_events"]})
                    if match and match.group(2) == "/metrics":
                        return self._send(*fake.metrics(match.group(1)))
                    if match and method == "POST" and match.group(2) == "/cancel":
                        job = fake.jobs[match.group(1)]
                        job["status"] = "cancelled"
                        return self._send(200, _public(job))
                return self._send(404, {"error": {"message": f"Unknown path {path}"}})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

        return Handler


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}
