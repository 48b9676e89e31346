# The README's two commands: `make demo` and `make test`. Each sets up what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch's CPU build lies on disk on our machines; on a CUDA box pip takes the matching wheel from PyPI.
TORCH ?= torch==2.13.0

.PHONY: setup demo sheet test export check-nbs nbtest pytest clean browser

setup: $(VENV)/.installed

# pip skips compiling every module of every package (about 40 s of a fresh setup, most of it never imported); Python
# then writes each module's .pyc on its first import. PYTHONDONTWRITEBYTECODE, set on some machines (ours), would make
# every process compile its imports again, so make's commands run without it.
unexport PYTHONDONTWRITEBYTECODE
PIP := $(BIN)/pip install -q --no-compile

# What `make demo` needs: torch and the package. The tests' tools come on top (`setup`), so a fresh clone's demo does
# not wait for them.
$(VENV)/.runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "$(TORCH)"
	$(PIP) -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(PIP) -e ".[dev]"
	# ltx-core pins a torchaudio that wants an older torch; what the parity tests use imports fine without it
	$(PIP) --no-deps "ltx-core==1.0.0" "einops>=0.8"
	touch $@

demo: $(VENV)/.runtime
	$(BIN)/ltx-nb demo

# The README's picture: a fresh demo run's last contact sheet, copied to $(SHEET) (commit it with the demo settings).
SHEET := nbs/images/demo_sheet.png
SHEET_RUN := outputs/sheet
sheet: $(VENV)/.runtime
	rm -rf $(SHEET_RUN)
	$(BIN)/ltx-nb demo --run-dir $(SHEET_RUN)
	$(BIN)/python -c "from ltx_nb.runner import demo_sheet; print(demo_sheet('$(SHEET_RUN)', '$(SHEET)'))"

# Notebooks -> ltx_nb/ (modules and the packaged job notebooks), clean notebooks, README from index.ipynb.
# nbdev-export rewrites pyproject.toml even when its text stays the same; its old mtime is put back then, or the new one
# would make the next target that needs `setup` run pip again.
export: setup
	@cp -p pyproject.toml $(VENV)/.pyproject.toml
	$(BIN)/nbdev-export
	@cmp -s pyproject.toml $(VENV)/.pyproject.toml && touch -r $(VENV)/.pyproject.toml pyproject.toml || true
	$(BIN)/nbdev-clean
	$(BIN)/python tools/sync_jobs.py
	$(BIN)/python tools/readme.py

# CI fails when export or clean would change a tracked file: notebooks and ltx_nb/ must agree.
check-nbs: export
	@test -z "$$(git status --porcelain -- nbs ltx_nb README.md)" || (git status --short -- nbs ltx_nb README.md; echo "nbdev-export/nbdev-clean/tools/readme.py changed files: run them and commit"; exit 1)

# One torch thread per notebook worker, as pytest's processes run (tests/conftest.py): side by side they fill the cores.
nbtest: setup
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2

# Two workers, one test file each at a time (a file's tests keep their order and module fixtures): most tests run
# one torch thread, so a second worker uses the second core. Files start longest first (`LONGEST_FIRST` in
# tests/conftest.py). `make pytest PYTEST_WORKERS=0` runs them in-process.
PYTEST_WORKERS ?= 2
pytest: setup
	$(BIN)/pytest -q --durations=25 $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# tests/test_browser.py drives Debian's chromium (Playwright's own browser downloads are not used); install it once.
browser:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# The notebooks and pytest run side by side; each one's output is printed when it finishes. The suite is CPU-bound on
# the 2-core machine (about 26 CPU-min of work since the heap pad and one thread per process; 36 before), so this is
# neutral there and helps where there are more cores.
test: browser check-nbs
	$(MAKE) --no-print-directory -j2 --output-sync=target nbtest pytest
