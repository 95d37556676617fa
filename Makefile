# ccsclip: `make demo` runs the main job on the embedded default, `make test` the test suite.
# Both create .venv when missing and (re)install when pyproject.toml changes.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
WORK ?= runs/demo
export BENTOML_DO_NOT_TRACK := True

.PHONY: setup demo test lint format bench bento image image-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[serve,dev]'
	# clip-benchmark without its model/captioning requirements (pyproject.toml, extra `data`)
	$(BIN)/python -m pip install -q --no-deps 'clip-benchmark==1.6.2'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

demo: setup
	WORK=$(WORK) PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# Two test processes by default (pytest-xdist; a file's tests stay in one process, so module
# fixtures such as servers and the image are built once): PYTEST_WORKERS=0 runs in this process.
PYTEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: setup
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: setup
	$(BIN)/python benchmarks/decompose.py

# The Bento: the embedded default's bundle with its gallery and probe sets in default/bundle/
# (the service finds <bundle>/galleries/* and <bundle>/probes/* by itself and serves those
# galleries read-only), then `bentoml build`.
bento: setup
	SERVE=0 WORK=runs/bento PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh
	rm -rf default && mkdir -p default
	cp -r runs/bento/bundle default/bundle
	mkdir -p default/bundle/galleries && cp -r runs/bento/galleries/gallery default/bundle/galleries/
	mkdir -p default/bundle/probes && cp -r runs/bento/world/accuracy-shape \
		runs/bento/world/accuracy-pattern runs/bento/world/bias-shape-colour default/bundle/probes/
	$(BIN)/bentoml build

# The serving image of the Bento (scripts/image/build.sh, docs/deploy.md): docker, podman or
# buildah; a Debian base from packages and a wheel directory when no registry is reachable.
image: bento
	PATH=$(abspath $(BIN)):$$PATH PYTHON=$(abspath $(BIN))/python bash scripts/image/build.sh

image-gpu: bento
	$(BIN)/bentoml build -f bentofile-gpu.yaml
	PATH=$(abspath $(BIN)):$$PATH PYTHON=$(abspath $(BIN))/python BENTO=ccsclip-gpu:latest \
		bash scripts/image/build.sh

clean:
	rm -rf runs default .pytest_cache .ruff_cache
