"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks.

It answers /v1/chat/completions with the documented payload shape, after an optional delay,
streams it as server-sent events when asked (`"stream": true`, one word a chunk, `chunk_delay` apart,
usage last when `stream_options.include_usage`), and can be scripted to fail: a queue of behaviours
(429 with Retry-After, 500, a hang, garbage) is consumed one request at a time
before it goes back to answering normally.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_server import LocalServer


class FakeOpenAI(LocalServer):
    def __init__(
        self, delay: float = 0.0, reply: str = "Hello from the test server.", responder=None, chunk_delay: float = 0.0
    ):
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.chunks_sent = 0  # streamed chunks written, all requests together
        self.reply = reply
        self.responder = responder  # optional: request body -> reply text
        self.script: deque[str] = deque()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def api_base(self) -> str:
        return f"{self.root}/v1"

    def fail_next(self, *behaviours: str) -> None:
        """Queue behaviours: '429', '500', '401', 'hang', 'garbage'."""
        self.script.extend(behaviours)

    def _next_behaviour(self, body: dict) -> str:
        with self._lock:
            self.requests.append(body)
            return self.script.popleft() if self.script else "ok"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as providers serve
            # headers and body in one write, no Nagle: otherwise each kept-alive reply waits
            # out a 40 ms delayed ACK, a cost no real provider's stack adds
            wbufsize = -1
            disable_nagle_algorithm = True

            def log_message(self, *_):  # keep test output clean
                pass

            def _send(self, status: int, payload, headers: dict | None = None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict, reply: str, prompt_words: int, words: int):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": body.get("model", "test-model")}  # fmt: skip
                pieces = [w + " " for w in reply.split(" ")]
                pieces[-1] = pieces[-1].rstrip()
                events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
                events += [{**base, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
                events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": prompt_words, "completion_tokens": words,
                             "total_tokens": prompt_words + words}  # fmt: skip
                    events.append({**base, "choices": [], "usage": usage})
                try:
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        with fake._lock:
                            fake.chunks_sent += 1
                        time.sleep(fake.chunk_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.wfile = io.BytesIO()  # the client stopped reading (a stopped stream): nothing left to send

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                behaviour = fake._next_behaviour(body)
                if behaviour == "429":
                    return self._send(
                        429,
                        {
                            "error": {
                                "message": "Rate limit reached for requests",
                                "type": "requests",
                                "code": "rate_limit_exceeded",
                            }
                        },
                        {"retry-after": "0.2"},
                    )
                if behaviour == "500":
                    return self._send(500, {"error": {"message": "The server had an error", "type": "server_error"}})
                if behaviour == "401":
                    # Worst case for secrecy: a provider that echoes the key it was sent.
                    sent = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    return self._send(
                        401,
                        {
                            "error": {
                                "message": f"Incorrect API key provided: {sent}",
                                "type": "invalid_request_error",
                                "code": "invalid_api_key",
                            }
                        },
                    )
                if behaviour == "hang":
                    time.sleep(30)
                if behaviour == "garbage":
                    return self._send(200, b"<html>not json")
                time.sleep(fake.delay)
                reply = fake.responder(body) if fake.responder else fake.reply
                words = len(reply.split())
                prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                if body.get("stream"):
                    return self._stream(body, reply, prompt_words, words)
                return self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "test-model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": reply},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_words,
                            "completion_tokens": words,
                            "total_tokens": prompt_words + words,
                        },
                    },
                )

        return Handler


def main() -> None:
    """Serve on its own (`python -m tests.fakes.openai_server --delay 0.3 --stage-aware`), printing its port."""
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stage-aware", action="store_true", help="answer each generation stage in its format")
    args = parser.parse_args()
    responder = None
    if args.stage_aware:
        from tests.fakes.stage_replies import stage_aware as responder
    with FakeOpenAI(delay=args.delay, responder=responder) as server:
        print(server.api_base, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()
