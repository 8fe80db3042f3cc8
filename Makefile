# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
SPARSEIDX := $(VENV)/bin/sparseidx
DATA := examples/amazon-book
OUT ?= out

FEAST_VENV ?= .venv-feast

.PHONY: setup demo test test-feast bench clean

setup:
	@bash scripts/setup.sh $(VENV) test

demo: setup
	@mkdir -p $(OUT)
	$(SPARSEIDX) build $(DATA)/train.txt --model chol --l2 200 --k 200 --out $(OUT)/amazon-book.idx --overwrite
	$(SPARSEIDX) info $(OUT)/amazon-book.idx
	$(SPARSEIDX) query $(OUT)/amazon-book.idx --history 0 1 2 3 -k 10
	$(SPARSEIDX) evaluate $(OUT)/amazon-book.idx --train $(DATA)/train.txt --test $(DATA)/test.txt -k 20 -k 50

test: setup
	$(PY) -m pytest -q

# Feast is an optional extra (~580 MB) with pins of its own: it lives in its own venv, and the
# export test drives its CLI and client there (apply, materialize, online read).
test-feast: setup
	test -x $(FEAST_VENV)/bin/feast || (python3 -m venv $(FEAST_VENV) && $(FEAST_VENV)/bin/pip install -q 'feast>=0.40')
	SPARSEIDX_FEAST_BIN=$(FEAST_VENV)/bin/feast $(PY) -m pytest -q tests/test_export.py -k feast

clean:
	rm -rf $(OUT) .pytest_cache
