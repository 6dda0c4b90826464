# Every target sets itself up first, so each works on a fresh machine.
PY := .venv/bin/python
VIDEO ?=

.PHONY: setup demo test test-fast test-compose test-multihost lint bench models clean

setup:
	@bash scripts/setup.sh

SAMPLE := data/sample/Videos/Subject_1_Story_7.mp4
SAMPLE_LABELS := data/sample/Annotations/Subject_1_Story_7.csv

demo: setup        ## analyse a sample video (or VIDEO=...) in one process; builds the bundled models if missing
	@[ -n "$(VIDEO)" ] || [ -f $(SAMPLE) ] || $(PY) -m cli synth --out data/sample --subjects 1 --stories 7 --duration 60
	@mkdir -p out
	@$(PY) -m cli analyze $(if $(VIDEO),$(VIDEO),$(SAMPLE) --subject 1 --annotation $(SAMPLE_LABELS)) --out out/valence.csv --plot out/valence.png --json out/valence.json

test: setup models ## the whole test suite (what CI runs); the ensemble tests serve the bundled models, built once
	@$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup   ## everything except the slow (training / ensemble) tests
	@$(PY) -m pytest -q -m "not slow"

test-compose: setup  ## the ensemble in real containers: build, up, scale, kill, restart (docs/docker.md; root without Docker)
	@bash scripts/test_compose.sh

test-multihost: setup  ## the stack on a real swarm of three namespaced hosts: scale, lose a host, jobs/h (docs/deploy.md; root)
	@bash scripts/test_multihost.sh

models: setup      ## build the bundled default models (synthetic data + small models) into models/
	@$(PY) -m training.bootstrap --models-dir models

lint: setup
	@.venv/bin/ruff check .

bench: setup
	@$(PY) -m cli bench

clean:
	rm -rf out var .pytest_cache .ruff_cache
