# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
SPARSEIDX := $(VENV)/bin/sparseidx
DATA := examples/amazon-book
OUT ?= out

.PHONY: setup demo test bench clean

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

clean:
	rm -rf $(OUT) .pytest_cache
