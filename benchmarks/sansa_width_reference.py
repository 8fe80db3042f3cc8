"""The reference package's UMR loss and Recall/NDCG@20 on amazon-book (CHOLMOD, density 5e-4, l2=20).

Needs ``sansa==1.1.0`` importable (e.g. ``pip install --target /tmp/sansa-pkg sansa==1.1.0`` and
``PYTHONPATH=/tmp/sansa-pkg``). Its logger reports the loss ("relative Frobenius norm squared")
before every finetune step and at the end; this prints them and the metrics as one JSON line.

    PYTHONPATH=/tmp/sansa-pkg python benchmarks/sansa_width_reference.py examples/amazon-book
"""

import json
import logging
import os
import re
import sys

import numpy as np
import sansa

from sparseidx import Factors, Index, evaluate
from sparseidx.data import load_interactions
from sparseidx.openblas import pinned_openblas


class Losses(logging.Handler):
    """Collects the losses the reference logs."""

    def __init__(self):
        super().__init__()
        self.values = []

    def emit(self, record):
        found = re.search(r"relative Frobenius norm squared: ([0-9.eE+-]+)", record.getMessage())
        if found:
            self.values.append(float(found.group(1)))


def main(data: str) -> None:
    """Fit the reference on ``data``/train.txt, evaluate on test.txt, print losses and metrics."""
    with pinned_openblas():
        import sksparse.cholmod  # noqa: F401
    handler = Losses()
    logging.getLogger("sansa").addHandler(handler)
    logging.getLogger("sansa").setLevel(logging.INFO)
    train = load_interactions(os.path.join(data, "train.txt"))
    config = sansa.SANSAConfig(l2=20.0, weight_matrix_density=5e-4,
                               gramian_factorizer_config=sansa.CHOLMODGramianFactorizerConfig(),
                               lower_triangle_inverter_config=sansa.UMRUnitLowerTriangleInverterConfig(
                                   scans=1, finetune_steps=5))
    encoder, decoder = sansa.SANSA(config).fit(train.X).weights
    factors = Factors(encoder=encoder, embeddings=decoder.T, priors=np.ones(train.n_items), item_ids=train.item_ids,
                      model="sansa-reference", params={}, popularity=np.asarray(train.X.sum(axis=0)).ravel())
    metrics = evaluate(Index.build(factors), train, os.path.join(data, "test.txt"), ks=(20,))
    print(json.dumps({"umr_losses": handler.values, "recall@20": metrics["recall@20"],
                      "ndcg@20": metrics["ndcg@20"]}))


if __name__ == "__main__":
    main(sys.argv[1])
