# Two commands on a fresh machine:  `make run`  (install + the default end-to-end job)  and  `make test`.
PY ?= python

.PHONY: install run test bench
install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps bigbench==1.0.0 lm-eval==0.4.13

run: install
	flanlab run

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/mix_speed.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/eval_speed.py
