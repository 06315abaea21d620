"""The Review page's server-side render time with 10,000 examples against the same page with 100.

Each size gets its own studio folder, filled with reviewed-looking examples, then the page is
rendered through Streamlit's AppTest (from app.py, as a user opens it) once to warm up and
`--repeats` times timed; the median is reported. Targets: 10,000 under 1.5 s, under 3x the 100.

    .venv/bin/python bench/review_render.py [--repeats 5] [--view Examples|Statistics]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["STUDIO_AUTOSTART_MONITOR"] = "0"
os.environ.setdefault("STUDIO_MODELS_DIR", str(REPO / "data" / "models"))

from streamlit.testing.v1 import AppTest  # noqa: E402

from pipeline import db, personas, startup  # noqa: E402
from tests.seed import add_examples  # noqa: E402


def render_time(count: int, repeats: int, view: str) -> float:
    os.environ["STUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="studio-bench-")
    db.reset_engines()
    startup.init(with_model=False)
    persona = personas.get_persona("collaborative")
    for start in range(0, count, 5000):
        add_examples(persona.id, min(5000, count - start), start=start)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("pages/review.py").run()
    if view != "Examples":
        at.segmented_control(key="review_view").set_value(view).run()
    assert not at.exception, at.exception
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        assert not at.exception, at.exception
        shown = [m.value for m in at.markdown] + [m.value for m in at.metric]
        assert any(f"{count:,}" in text for text in shown), "the page did not render the examples"
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--view", default="Examples", choices=["Examples", "Statistics"])
    args = parser.parse_args()
    small = render_time(100, args.repeats, args.view)
    large = render_time(10_000, args.repeats, args.view)
    print(f"Review page ({args.view}), median of {args.repeats} renders:")
    print(f"  100 examples:    {small:.3f} s")
    print(f"  10,000 examples: {large:.3f} s (target < 1.5 s)")
    print(f"  ratio: {large / small:.2f}x (target < 3x)")


if __name__ == "__main__":
    main()
