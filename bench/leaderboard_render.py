"""The Leaderboard page's rerun time: through the board cache (ours) against the same page rebuilding the
board on every rerun (uncached, as it did before), in one run, on one studio.

The studio holds a finished LLM-judged evaluation: 6 contestants, 240 battles (16 per pair), each judged
in both orders on the overall criterion and 5 traits (2,880 battle rows), and 1-5 trait scores. The
page is opened through Streamlit's AppTest from app.py, as a user opens it, once to warm up; then each
setting is rerun `--repeats` times and the median reported. Target: ours under 0.3 s.

    .venv/bin/python bench/leaderboard_render.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["STUDIO_AUTOSTART_MONITOR"] = "0"
os.environ.setdefault("STUDIO_MODELS_DIR", str(REPO / "data" / "models"))
os.environ["STUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="studio-bench-")

from sqlalchemy import insert  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from pipeline import db, startup  # noqa: E402
from pipeline.db import session_scope  # noqa: E402
from pipeline.evaluation import leaderboard  # noqa: E402
from pipeline.models import Battle, Job, TraitScore, utcnow  # noqa: E402

CONTESTANTS = ["base", "base + prompt", "ft-a", "ft-a + prompt", "ft-b", "ft-b + prompt"]
STRENGTH = {name: i * 0.35 for i, name in enumerate(CONTESTANTS)}
TRAITS = ["collaborative", "curious", "ethical", "candid", "warm"]
PER_PAIR = 16  # 15 pairs x 16 = 240 battles


def seed(rng: random.Random) -> int:
    with session_scope() as session:
        job = Job(kind="evaluation", name="bench", status="succeeded", finished_at=utcnow(),
                  params={"anchor": "base", "contestants": CONTESTANTS, "judge": "referee"})  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    battles, scores, prompt = [], [], 0
    for a, b in combinations(CONTESTANTS, 2):
        for _ in range(PER_PAIR):
            prompt += 1
            text_a, text_b = f"{a} replies " * rng.randint(20, 60), f"{b} replies " * rng.randint(20, 60)
            for criterion in ["overall", *TRAITS]:
                p = 1 / (1 + pow(10, STRENGTH[b] - STRENGTH[a]))
                verdict = "a" if rng.random() < p else ("b" if rng.random() < 0.85 else "tie")
                for order in ("ab", "ba"):
                    battles.append(
                        {"job_id": job_id, "prompt_id": prompt, "prompt": f"Prompt {prompt}",
                         "prompt_group": rng.choice(["held-out", "adversarial"]), "contestant_a": a,
                         "contestant_b": b, "response_a": text_a, "response_b": text_b, "judge": "referee",
                         "criterion": criterion, "verdict": verdict, "order": order, "rationale": "because",
                         "cache_key": "", "at": utcnow()}
                    )  # fmt: skip
            for name in (a, b):
                for trait in TRAITS:
                    scores.append(
                        {"job_id": job_id, "prompt_id": prompt, "contestant": name, "prompt": "", "trait": trait,
                         "score": float(rng.randint(1, 5)), "judge": "referee", "rationale": "", "cache_key": "",
                         "at": utcnow()}
                    )  # fmt: skip
    with session_scope() as session:
        session.execute(insert(Battle), battles)
        session.execute(insert(TraitScore), scores)
    return job_id


def rerun_times(at: AppTest, repeats: int, cached: bool) -> list[float]:
    os.environ["STUDIO_BOARD_CACHE"] = "1" if cached else "0"
    at.run()  # warm-up (fills the cache when cached)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        assert not at.exception, at.exception
        shown = {m.label: m.value for m in at.metric}
        assert str(shown["Rated battles"]) == str(PER_PAIR * 15), shown
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    db.reset_engines()
    startup.init(with_model=False)
    job_id = seed(random.Random(0))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    uncached = rerun_times(at, args.repeats, cached=False)
    leaderboard.cache_clear()
    ours = rerun_times(at, args.repeats, cached=True)
    u, o = statistics.median(uncached), statistics.median(ours)
    started = time.perf_counter()
    leaderboard.build(job_id)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    leaderboard.version(job_id)
    version_ms = (time.perf_counter() - started) * 1000
    print(f"6 contestants, {PER_PAIR * 15} battles ({PER_PAIR * 15 * 12} battle rows), median of {args.repeats} reruns")
    print(f"uncached (board rebuilt every rerun): {u:.3f} s")
    print(f"ours (board cache, keyed by the run's version): {o:.3f} s")
    print(f"ratio ours / uncached: {o / u:.2f} ({u / o:.1f}x faster)")
    print(f"one board build: {build_s:.3f} s; reading the version key: {version_ms:.1f} ms")


if __name__ == "__main__":
    main()
