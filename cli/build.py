"""``sparseidx build``: interactions (or imported embeddings) -> factors -> index directory."""

from __future__ import annotations

import inspect
import math
import time

import click

from sparseidx.data import load_interactions, popularity
from sparseidx.errors import DataError
from sparseidx.factors import load_embeddings
from sparseidx.index import Index
from sparseidx.index.dense import DenseIndex, check_factory
from sparseidx.index.format import check_index_output
from sparseidx.models import FITTERS, fit, fitter
from sparseidx.models.cholesky import ORDERS

from .common import FiniteFloat, echo_json, info

DENSE_MODELS = ("puresvd", "chol-lowrank", "elsa")

# which command-line options each model takes (names of fit_* keyword arguments)
MODEL_PARAMS = {
    "chol": ("l2", "beta", "k", "order"),
    "sansa": ("l2", "factorizer", "density", "nnz_per_item", "scans", "finetune_steps"),
    "puresvd": ("dims", "seed"),
    "chol-lowrank": ("dims", "l2", "seed"),
    "elsa": ("dims", "epochs", "batch_size", "lr", "seed"),
    "celsa": ("dims", "nnz_per_item", "epochs", "batch_size", "lr", "schedule", "rewind", "seed"),
}


def _beta(value: str):
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a finite number", param_hint="--beta")
    return number


@click.command()
@click.argument("interactions", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Index directory to write.")
@click.option("--model", type=click.Choice(list(FITTERS)), default="chol", show_default=True,
              help="Embedding model to train from INTERACTIONS.")
@click.option("--embeddings", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Import embeddings instead of training: .npz (scipy sparse matrix, or encoder/embeddings "
                   "arrays) or a canonical Parquet export.")
@click.option("--backend", type=click.Choice(["sparse", "faiss"]), default=None,
              help="Index backend [default: faiss for dense models (puresvd, chol-lowrank, elsa), else sparse].")
@click.option("--faiss-index", default="Flat", show_default=True,
              help="FAISS factory string for --backend faiss, e.g. 'Flat', 'HNSW32,Flat', 'IVF1024,Flat'.")
@click.option("--l2", type=FiniteFloat(min=0, min_open=True), default=None,
              help="L2 regularisation lambda [default: 200 for chol, 20 for sansa].")
@click.option("--beta", default=None,
              help="Cholesky: beta > 1 for beta*D_P - P, or 'auto' (start at 2, raise until positive definite) "
                   "[default: auto].")
@click.option("--k", "k", type=click.IntRange(min=1), default=None,
              help="Cholesky: non-zeros kept per embedding row [default: 200].")
@click.option("--order", type=click.Choice(ORDERS), default=None,
              help="Cholesky: item order, which decides which rows can hold many non-zeros [default: popularity].")
@click.option("--dims", type=click.IntRange(min=1), default=None,
              help="Dense/ELSA models: embedding dimensions [default: 256; 1024 for celsa].")
@click.option("--factorizer", type=click.Choice(["auto", "cholmod", "icf"]), default=None,
              help="SANSA: exact CHOLMOD factor or incomplete Cholesky [default: auto, from the predicted "
                   "factor size].")
@click.option("--density", type=FiniteFloat(min=0, min_open=True), default=None,
              help="SANSA: target density of the factor and its inverse (fraction of N^2) [default: 5e-4].")
@click.option("--nnz-per-item", type=click.IntRange(min=1), default=None,
              help="SANSA / Compressed ELSA: non-zeros per item (instead of --density).")
@click.option("--scans", type=click.IntRange(min=0), default=None, help="SANSA: UMR scans.")
@click.option("--finetune-steps", type=click.IntRange(min=0), default=None, help="SANSA: UMR finetune steps.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="ELSA: training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="ELSA: users per batch.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None, help="ELSA: learning rate.")
@click.option("--schedule", type=click.Choice(["exponential", "linear", "step"]), default=None,
              help="Compressed ELSA: how non-zeros per item decrease during training.")
@click.option("--rewind", is_flag=True, default=None, help="Compressed ELSA: rewind surviving weights each stage.")
@click.option("--seed", type=int, default=None, help="Random seed of the models that use one.")
@click.option("--postings-per-dim", type=click.IntRange(min=1), default=None,
              help="Static pruning: keep the largest-|weight| postings of each dimension.")
@click.option("--min-weight", type=FiniteFloat(min=0), default=None,
              help="Static pruning: drop postings with |weight| below this global threshold.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print a build summary as JSON.")
def build(interactions, out, model, embeddings, backend, faiss_index, postings_per_dim, min_weight, overwrite,
          as_json, **model_options):
    """Train item embeddings from INTERACTIONS and write an index to --out.

    \b
    INTERACTIONS: 'user item item ...' lines, or CSV/TSV/Parquet with user,item[,weight].
    Examples:
      sparseidx build train.txt --model chol --k 200 --out book.idx
      sparseidx build train.txt --model sansa --density 5e-4 --out sansa.idx
      sparseidx build train.txt --model puresvd --dims 256 --faiss-index HNSW32,Flat --out svd.idx
      sparseidx build --embeddings emb.npz --out imported.idx
    """
    start = time.perf_counter()
    check_index_output(out, overwrite)  # every check that can run before the work runs now
    if embeddings:
        factors = _import(interactions, embeddings)
        backend = backend or "sparse"  # imported embeddings are sparse
        _check_backend("the imported embeddings", False, backend, faiss_index, postings_per_dim, min_weight,
                       factors.n_dims)
    else:
        if not interactions:
            raise click.UsageError("give INTERACTIONS to train from, or --embeddings FILE to import")
        kwargs = _model_kwargs(model, model_options)
        dense = model in DENSE_MODELS
        backend = backend or ("faiss" if dense else "sparse")
        dims = kwargs.get("dims") or (inspect.signature(fitter(model)).parameters["dims"].default if dense else None)
        _check_backend(f"--model {model}", dense, backend, faiss_index, postings_per_dim, min_weight, dims)
        inter = load_interactions(interactions)
        info(f"read {inter.nnz:,} interactions of {inter.n_users:,} users on {inter.n_items:,} items")
        factors = fit(model, inter, **kwargs)
    if backend == "faiss":
        index = DenseIndex.build(factors, faiss_index=faiss_index)
    else:
        index = Index.build(factors, postings_per_dim=postings_per_dim, min_weight=min_weight)
    index.manifest["build_seconds"] = round(time.perf_counter() - start, 3)
    index.write(out, overwrite=overwrite)
    summary = {"index": out, "model": factors.model, "backend": backend, "n_items": factors.n_items,
               "n_dims": factors.n_dims, "params": factors.params, "seconds": index.manifest["build_seconds"]}
    if as_json:
        echo_json(summary)
    else:
        info(f"wrote {out}: {factors.model} model ({backend}), {factors.n_items:,} items x {factors.n_dims:,} dims "
             f"in {summary['seconds']:.1f} s")


def _check_backend(what, dense, backend, faiss_index, postings_per_dim, min_weight, dims) -> None:
    """Refuse a model/backend combination, or a FAISS factory string, that would fail after the work."""
    if backend == "faiss" and not dense:
        raise click.UsageError(f"{what} gives sparse embeddings, served by the sparse backend; "
                               f"--backend faiss takes the dense models ({', '.join(DENSE_MODELS)})")
    if backend == "sparse" and dense:
        raise click.UsageError(f"{what} gives dense embeddings: use --backend faiss")
    if backend == "faiss" and (postings_per_dim or min_weight is not None):
        raise click.UsageError("--postings-per-dim and --min-weight apply to the sparse backend only")
    if backend == "faiss":
        check_factory(faiss_index, dims)


def _import(interactions, embeddings):
    inter = load_interactions(interactions) if interactions else None
    factors = load_embeddings(embeddings, item_ids=inter.item_ids if inter is not None else None)
    if inter is not None:
        if len(inter.item_ids) != factors.n_items:
            raise DataError(f"{interactions} has {len(inter.item_ids)} items but {embeddings} has "
                            f"{factors.n_items} embedding rows")
        factors.popularity = popularity(inter.X)
    return factors


def _model_kwargs(model: str, options: dict) -> dict:
    """The options the user set that this model takes; the model's own defaults fill the rest."""
    kwargs = {}
    for name in MODEL_PARAMS[model]:
        value = options.get(name)
        if value is None:
            continue
        kwargs[name] = _beta(value) if name == "beta" else value
    given = {k for k, v in options.items() if v is not None}
    ignored = sorted(given - set(MODEL_PARAMS[model]))
    if ignored:
        raise click.UsageError(f"--model {model} does not take " + ", ".join("--" + n.replace("_", "-") for n in ignored))
    return kwargs
