"""`python -m pipeline.jobs run ID`: one job's process (see runner.py)."""

import sys

from pipeline.jobs.runner import main

sys.exit(main())
