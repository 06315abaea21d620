"""An Ollama server on 127.0.0.1 for tests: the documented GET /api/tags, POST /api/chat and POST /api/show
(litellm asks /api/show for a model's context length and capabilities).

/api/chat answers whole (`"stream": false`) or, as Ollama does by default, as NDJSON: one JSON object a
line, one word each, `"done": false`, then a last object with `"done": true`, `done_reason` and the
counts (prompt_eval_count, eval_count). An unknown model gets Ollama's 404.
"""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_server import LocalServer

DEFAULT_MODELS = {"llama3.2:3b": 2_019_393_189, "qwen2.5:0.5b": 397_821_319, "gemma3:4b": 3_338_801_804}


class FakeOllama(LocalServer):
    def __init__(self, models: dict[str, int] | None = None, reply: str = "Hello from Ollama.", chunk_delay=0.0):
        self.models = dict(DEFAULT_MODELS if models is None else models)  # name -> size in bytes
        self.reply = reply
        self.chunk_delay = chunk_delay
        self.requests: list[tuple[str, dict]] = []  # (path, body)
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with fake._lock:
                    fake.requests.append((self.path, {}))
                if self.path != "/api/tags":
                    return self._send(404, {"error": "404 page not found"})
                now = datetime.now(UTC).isoformat()
                listed = [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": now,
                        "size": size,
                        "digest": f"{abs(hash(name)):064x}"[:64],
                        "details": {
                            "format": "gguf",
                            "family": "llama",
                            "families": ["llama"],
                            "parameter_size": "",
                            "quantization_level": "Q4_K_M",
                        },  # fmt: skip
                    }
                    for name, size in fake.models.items()
                ]
                return self._send(200, {"models": listed})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append((self.path, body))
                if self.path == "/api/show":
                    name = body.get("model") or body.get("name") or ""
                    if name not in fake.models:
                        return self._send(404, {"error": f"model '{name}' not found"})
                    return self._send(200, {"modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                                            "details": {"format": "gguf", "family": "llama"},
                                            "model_info": {"general.architecture": "llama",
                                                           "llama.context_length": 8192},
                                            "capabilities": ["completion"]})  # fmt: skip
                if self.path != "/api/chat":
                    return self._send(404, {"error": "404 page not found"})
                model = body.get("model", "")
                if model not in fake.models:
                    return self._send(404, {"error": f'model "{model}" not found, try pulling it first'})
                prompt_count = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                words = fake.reply.split(" ")
                now = datetime.now(UTC).isoformat()
                last = {"model": model, "created_at": now, "message": {"role": "assistant", "content": ""},
                        "done": True, "done_reason": "stop", "total_duration": 1_000_000, "load_duration": 1000,
                        "prompt_eval_count": prompt_count, "prompt_eval_duration": 1000,
                        "eval_count": len(words), "eval_duration": 1000}  # fmt: skip
                if body.get("stream", True) is False:
                    return self._send(200, {**last, "message": {"role": "assistant", "content": fake.reply}})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                pieces = [w + " " for w in words[:-1]] + [words[-1]]
                lines = [
                    {"model": model, "created_at": now, "message": {"role": "assistant", "content": p}, "done": False}
                    for p in pieces
                ] + [last]
                try:
                    for line in lines:
                        self.wfile.write(json.dumps(line).encode() + b"\n")
                        self.wfile.flush()
                        time.sleep(fake.chunk_delay)
                except (BrokenPipeError, ConnectionResetError):
                    self.wfile = io.BytesIO()

        return Handler
