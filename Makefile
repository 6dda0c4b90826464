# Every target sets itself up first, so each works on a fresh machine.
PY := .venv/bin/python
VIDEO ?=

.PHONY: setup demo test test-fast lint bench models clean

setup:
	@bash scripts/setup.sh

demo: setup        ## analyse the bundled sample video and write its per-frame valence
	@$(PY) -m shared.cli analyze $(if $(VIDEO),$(VIDEO),--sample) --out out/sample_valence.csv

test: setup        ## the whole test suite (what CI runs)
	@$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup   ## everything except the slow (training / ensemble) tests
	@$(PY) -m pytest -q -m "not slow"

lint: setup
	@.venv/bin/ruff check .

bench: setup
	@$(PY) -m shared.cli bench

clean:
	rm -rf out var .pytest_cache .ruff_cache
