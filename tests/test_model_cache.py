"""Local models leave memory cleanly: a replaced or evicted model's batching worker ends, the requests
already given to it are answered, and its weights are freed. On the tiny model, so it takes seconds."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.llm import embedded
from pipeline.llm.batcher import Generation, ModelUnloaded
from tests.tiny_model import TINY

HELLO = [{"role": "user", "content": "Hi"}]


def copy_tiny(models: Path, name: str) -> Path:
    return shutil.copytree(models / TINY, models / name)


def retrain(folder: Path) -> None:
    """What training does to a model it retrains under the same name: new weights, written whole, swapped in."""
    from transformers import LlamaConfig, LlamaForCausalLM

    staging = folder.parent / f".{folder.name}.partial"
    shutil.copytree(folder, staging)
    LlamaForCausalLM(LlamaConfig.from_pretrained(folder)).save_pretrained(staging)
    shutil.rmtree(folder)
    staging.rename(folder)


def workers(name: str | None = None) -> list[threading.Thread]:
    """The live batching worker threads: all of them, or those of the model `name`."""
    return [
        t
        for t in threading.enumerate()
        if (t.name == f"batcher-{name}" if name else t.name.startswith("batcher-")) and t.is_alive()
    ]


def settled_workers(limit: int, name: str | None = None) -> int:
    """How many workers are alive once those just closed have ended (a closed worker ends on its own
    thread, a moment after the call that closed it returns)."""
    deadline = time.monotonic() + 10
    while len(workers(name)) > limit and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(workers(name))


def hold_inside_generate(model) -> tuple[threading.Event, threading.Event]:
    """Make the model's generate, once entered, wait until the test sets `release`; and `inside` when entered."""
    inside, release = threading.Event(), threading.Event()
    generate = model.generate

    def held(*args, **kwargs):
        inside.set()
        assert release.wait(30)
        return generate(*args, **kwargs)

    model.generate = held
    return inside, release


def chat(name: str) -> Generation:
    return embedded.generate(name, HELLO, max_tokens=3, temperature=0)


def test_replacing_a_model_folder_again_and_again_keeps_one_worker_and_frees_each_old_copy(models):
    folder = copy_tiny(models, "tiny-swap")
    copies = []
    for _ in range(6):
        assert chat("tiny-swap").completion_tokens >= 1
        copies.append(weakref.ref(embedded.load("tiny-swap").model))
        assert settled_workers(1, "tiny-swap") == 1
        assert settled_workers(embedded.CACHE_SIZE) <= embedded.CACHE_SIZE
        retrain(folder)

    gc.collect()
    assert [copy() is None for copy in copies] == [True] * 5 + [False]  # only the last one read is still loaded


def test_models_evicted_from_the_cache_end_their_workers_and_free_their_weights(models):
    names = [f"tiny-{i}" for i in range(embedded.CACHE_SIZE + 2)]
    copies = []
    for name in names:
        copy_tiny(models, name)
        assert chat(name).completion_tokens >= 1
        copies.append(weakref.ref(embedded.load(name).model))
        assert settled_workers(embedded.CACHE_SIZE) <= embedded.CACHE_SIZE

    gc.collect()
    assert [copy() is None for copy in copies] == [True, True] + [False] * embedded.CACHE_SIZE
    assert [t.name for t in workers()] == [f"batcher-{name}" for name in names[2:]]
    assert chat(names[0]).completion_tokens >= 1  # an evicted model is simply loaded again when asked for


@pytest.mark.parametrize("how", ["replaced", "evicted"])
def test_requests_given_to_a_model_before_it_is_unloaded_are_answered_and_later_ones_refused(models, how):
    folder = copy_tiny(models, "tiny-busy")
    old = embedded.batcher("tiny-busy")
    model = old.loaded.model
    inside, release = hold_inside_generate(model)
    with ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(old.generate, HELLO, max_tokens=3, temperature=0)
        assert inside.wait(30)
        queued = pool.submit(old.generate, HELLO, max_tokens=3, temperature=0.5, seed=1)  # waits its turn
        deadline = time.monotonic() + 10
        while old._queue.qsize() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert old._queue.qsize() == 1

        if how == "replaced":
            retrain(folder)
            assert embedded.batcher("tiny-busy") is not old
        else:
            for i in range(embedded.CACHE_SIZE):
                embedded.load(copy_tiny(models, f"tiny-other-{i}").name)
        assert old.closed

        with pytest.raises(ModelUnloaded, match="'tiny-busy' was unloaded"):
            old.generate(HELLO, max_tokens=3, temperature=0)  # refused at once, not left waiting
        assert chat("tiny-busy").completion_tokens >= 1  # the name itself still answers, from a fresh copy

        release.set()
        assert in_flight.result(timeout=60).completion_tokens >= 1
        assert queued.result(timeout=60).completion_tokens >= 1

    assert old.join(timeout=10)
    assert old.loaded is None
    weights = weakref.ref(model)
    del model
    gc.collect()
    assert weights() is None


FIRST_IMPORT_IN_THREADS = """
import threading
from pipeline.llm._transformers import names
errors = []
def load():
    try:
        names("AutoModel", "AutoTokenizer")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=load) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
"""


def test_transformers_imported_first_by_three_threads_at_once_gives_each_its_classes():
    """Bare `from transformers import AutoModel` in three fresh threads fails in two ("cannot import name"):
    the Evaluate page showed that traceback when a run started while the last one was still importing."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", FIRST_IMPORT_IN_THREADS], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


LOADS_IN_THREADS = """
import threading
from pipeline import embeddings
from pipeline.llm import embedded
errors = []
def chat_model():
    try:
        loaded = embedded._read("x", embedded.model_path(embedded.EMBEDDED_NAME))
        assert not any(p.is_meta for p in loaded.model.parameters()), "meta tensors"
    except Exception as exc:
        errors.append(repr(exc))
def embedding_model():
    try:
        _, model = embeddings._model()
        assert not any(p.is_meta for p in model.parameters()), "meta tensors"
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=t) for t in (chat_model, embedding_model, chat_model)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
"""


def test_models_loaded_by_three_threads_at_once_each_get_real_weights():
    """Loading builds modules on the meta device and fills them, patching process-wide state while it runs:
    the Playground's first load of a deployed adapter beside another load failed with "Cannot copy out of
    meta tensor; no data!". Loads take turns."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, SHARED_MODELS

    done = subprocess.run(
        [sys.executable, "-c", LOADS_IN_THREADS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "STUDIO_MODELS_DIR": str(SHARED_MODELS), "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
