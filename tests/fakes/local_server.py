"""A threaded HTTP server on 127.0.0.1 with a free port, as a context manager: the fakes' base."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class _Server(ThreadingHTTPServer):
    # Python's default listen backlog is 5: a burst of concurrent clients would overflow it and
    # wait out a 1 s SYN retransmit, which no real provider makes them do.
    request_queue_size = 256
    daemon_threads = True


class LocalServer:
    """Subclasses set their state, then call `super().__init__(handler_class)`."""

    def __init__(self, handler) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._server.shutdown()
        self._server.server_close()
