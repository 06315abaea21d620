"""Names from transformers, imported under one lock.

transformers' lazy module is not thread-safe on first use: two threads asking for `AutoModel` at once,
and one gets "cannot import name 'AutoModel' from 'transformers'". The studio's server imports it from
more than one thread (a script run still importing while the next run of the same page starts, a reply
streaming in the Playground), so every import of it in code the server runs goes through here.
"""

from __future__ import annotations

import importlib
import threading

_lock = threading.Lock()
# Loading weights patches process-wide torch state while it runs (modules are built on the meta device,
# then filled): a second load in another thread at that moment can build its model from meta tensors,
# "Cannot copy out of meta tensor; no data!". One load at a time per process.
loading = threading.RLock()


def names(*wanted: str) -> tuple:
    """`names("AutoModel", "AutoTokenizer")` → the two classes, as `from transformers import …` gives them."""
    with _lock:
        module = importlib.import_module("transformers")
        return tuple(getattr(module, name) for name in wanted)
