"""``sparseidx build``: interactions (or imported embeddings) -> factors -> index directory."""

from __future__ import annotations

import os
import time
from collections import Counter

import click

from sparseidx.data import load_interactions, popularity
from sparseidx.errors import DataError
from sparseidx.embeddings import load_embeddings
from sparseidx.index import Index
from sparseidx.index.calibrate import calibrate
from sparseidx.index.dense import check_factory
from sparseidx.index.format import check_index_output
from sparseidx.models import MODELS, model
from sparseidx.models.params import OneOf, Param, ParamError

from .common import FiniteFloat, echo_json, info


def _declared() -> dict[str, list[tuple[str, Param]]]:
    """{parameter name: [(model name, declaration)]} over the command-line parameters of every model."""
    declared: dict[str, list[tuple[str, Param]]] = {}
    for cls in MODELS.values():
        for param in cls.params:
            if param.cli:
                declared.setdefault(param.name, []).append((cls.name, param))
    return declared


DECLARED = _declared()
DENSE_MODELS = [name for name, cls in MODELS.items() if cls.dense]


class ParamText(click.ParamType):
    """Parses a model parameter's text by its declared type; the model's declaration then checks the value."""

    def __init__(self, param: Param):
        self.param = param
        self.name = param.type.__name__

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or value in self.param.also:
            return value
        try:
            return self.param.type(value)
        except ValueError:
            self.fail(f"{value!r} is not {self.param.allowed(none=False)}", param, ctx)


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help(declared: list[tuple[str, Param]]) -> str:
    """Which models take the parameter, what it is, what it allows and its defaults, from the declarations."""
    first = declared[0][1]
    if len({p.help for _, p in declared}) == 1:
        text = f"{', '.join(name for name, _ in declared)}: {first.help}"
    else:
        text = "; ".join(f"{name}: {p.help}" for name, p in declared)
    if first.constraint is not None and not isinstance(first.constraint, OneOf):
        text += "; " + " or ".join([str(first.constraint), *(repr(v) for v in first.also if v is not None)])
    if first.type is bool:
        return text
    common = Counter(p.default for _, p in declared).most_common(1)[0][0]  # shown bare, the others by model
    shown = [] if common is None else [_show(common)]
    shown += [f"{_show(p.default)} for {name}" for name, p in declared if p.default not in (None, common)]
    return text + (f" [default: {'; '.join(shown)}]" if shown else "")


def model_options(f):
    """One option per model parameter (--l2, --k, --dims, ...), built from the models' declarations."""
    for name, declared in reversed(DECLARED.items()):
        param = declared[0][1]
        flag = "--" + name.replace("_", "-")
        if param.type is bool:
            f = click.option(flag, name, is_flag=True, default=None, help=_help(declared))(f)
        else:
            metavar = f"[{'|'.join(param.constraint.choices)}]" if isinstance(param.constraint, OneOf) else None
            f = click.option(flag, name, type=ParamText(param), default=None, metavar=metavar,
                             help=_help(declared))(f)
    return f


@click.command()
@click.argument("interactions", required=False, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Index directory to write.")
@click.option("--model", "model_name", type=click.Choice(list(MODELS)), default="chol", show_default=True,
              help="Embedding model to train from INTERACTIONS.")
@click.option("--embeddings", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Import embeddings instead of training: .npz (scipy sparse matrix, or encoder/embeddings "
                   "arrays) or a canonical Parquet export.")
@click.option("--backend", type=click.Choice(["sparse", "faiss"]), default=None,
              help=f"Index backend [default: faiss for dense models ({', '.join(DENSE_MODELS)}), else sparse].")
@click.option("--faiss-index", default="Flat", show_default=True,
              help="FAISS factory string for --backend faiss, e.g. 'Flat', 'HNSW32,Flat', 'IVF1024,Flat'.")
@model_options
@click.option("--postings-per-dim", type=click.IntRange(min=1), default=None,
              help="Static pruning: keep the largest-|weight| postings of each dimension.")
@click.option("--min-weight", type=FiniteFloat(min=0), default=None,
              help="Static pruning: drop postings with |weight| below this global threshold.")
@click.option("--target-recall", type=FiniteFloat(0, 1, min_open=True), default=None,
              help="Calibrate the fastest query setting whose recall@k against exact search reaches this, on a "
                   "sample of INTERACTIONS' histories; it becomes the index's default operating point.")
@click.option("--target-k", type=click.IntRange(min=1), default=20, show_default=True,
              help="The k of --target-recall.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (atomically).")
@click.option("--binarize", is_flag=True,
              help="Count every (user, item) pair of INTERACTIONS as 1. Without it a weight/rating/value column "
                   "is used as given (repeated pairs summed); the papers' models assume 0/1 data.")
@click.option("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
              help="Form X^T X on Dask workers from INTERACTIONS, a file or a directory of files (model chol; "
                   "needs sparseidx[dask]; see docs/distributed.md).")
@click.option("--json", "as_json", is_flag=True, help="Print a build summary as JSON.")
def build(interactions, out, model_name, embeddings, backend, faiss_index, postings_per_dim, min_weight,
          target_recall, target_k, overwrite, binarize, scheduler, as_json, **params):
    """Train item embeddings from INTERACTIONS and write an index to --out.

    \b
    INTERACTIONS: 'user item item ...' lines, or CSV/TSV/Parquet with user,item[,weight].
    Examples:
      sparseidx build train.txt --model chol --k 200 --out book.idx
      sparseidx build train.txt --model sansa --density 5e-4 --out sansa.idx
      sparseidx build train.txt --model puresvd --dims 256 --faiss-index HNSW32,Flat --out svd.idx
      sparseidx build --embeddings emb.npz --out imported.idx
      sparseidx build interactions/ --scheduler local:2 --out book.idx
      sparseidx build train.txt --model chol --target-recall 0.99 --out book.idx
      sparseidx build big.txt --model chol --route sparse --inverse-nnz-per-item 100 --out big.idx
    """
    start = time.perf_counter()
    check_index_output(out, overwrite)  # every check that can run before the work runs now
    _check_dataset(interactions, embeddings, scheduler, model_name, target_recall)
    if target_recall is not None and not interactions:
        raise click.UsageError("--target-recall calibrates on the histories of INTERACTIONS; give them")
    inter = None
    if embeddings:
        factors, inter = _import(interactions, embeddings)
        backend = backend or "sparse"  # imported embeddings are sparse
        _check_backend("the imported embeddings", False, backend, faiss_index, postings_per_dim, min_weight,
                       factors.n_dims)
    else:
        if not interactions:
            raise click.UsageError("give INTERACTIONS to train from, or --embeddings FILE to import")
        estimator = _model(model_name, params)
        dense = estimator.dense
        backend = backend or ("faiss" if dense else "sparse")
        _check_backend(f"--model {model_name}", dense, backend, faiss_index, postings_per_dim, min_weight,
                       estimator.dims if dense else None)
        if scheduler and binarize:
            raise click.UsageError("--binarize applies to training on one machine; --scheduler workers read "
                                   "weights as given")
        if scheduler:
            factors = _fit_distributed(estimator, interactions, scheduler)
        else:
            inter = load_interactions(interactions, binarize=binarize)
            info(f"read {inter.nnz:,} interactions of {inter.n_users:,} users on {inter.n_items:,} items")
            factors = estimator.fit(inter).factors_
    options = {"faiss_index": faiss_index} if backend == "faiss" else {"postings_per_dim": postings_per_dim,
                                                                        "min_weight": min_weight}
    index = Index.build(factors, backend=backend, **options)
    if target_recall is not None:
        index.manifest["operating_point"] = calibrate(index, inter.X, target_recall, target_k)
    index.manifest["build_seconds"] = round(time.perf_counter() - start, 3)
    index.write(out, overwrite=overwrite)
    summary = {"index": out, "model": factors.model, "backend": backend, "n_items": factors.n_items,
               "n_dims": factors.n_dims, "params": factors.params, "seconds": index.manifest["build_seconds"],
               "operating_point": index.manifest.get("operating_point")}
    if as_json:
        echo_json(summary)
    else:
        info(f"wrote {out}: {factors.model} model ({backend}), {factors.n_items:,} items x {factors.n_dims:,} dims "
             f"in {summary['seconds']:.1f} s")


def _check_dataset(interactions, embeddings, scheduler, model_name, target_recall) -> None:
    """Refuse a dataset directory without --scheduler, and --scheduler where it does not apply."""
    if scheduler and (embeddings or model_name != "chol" or target_recall is not None):
        raise click.UsageError("--scheduler trains --model chol from INTERACTIONS (its Gram matrix is summed on the "
                               "workers); other models, --embeddings and --target-recall run on one machine")
    if interactions and not scheduler and os.path.isdir(interactions):
        raise click.UsageError(f"INTERACTIONS {interactions} is a directory: a dataset of files is read with "
                               "--scheduler")
    if scheduler:
        from sparseidx.distributed import parse_scheduler

        parse_scheduler(scheduler)


def _fit_distributed(estimator, interactions, scheduler):
    """Factors from the Gram matrix and item counts summed on the Dask workers."""
    from sparseidx.distributed import gram

    result = gram(interactions, scheduler)
    info(f"read {result.nnz:,} interactions of {result.n_users:,} users on {len(result.item_ids):,} items "
         "on the workers")
    return estimator.fit_gram(result.G, result.counts, result.item_ids).factors_


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
    return factors, inter


def _model(name: str, options: dict):
    """Model ``name`` with the parameters the user set (its declaration checks them and fills the rest)."""
    given = {k: v for k, v in options.items() if v is not None}
    takes = {p.name for p in MODELS[name].params if p.cli}
    ignored = sorted(set(given) - takes)
    if ignored:
        flags = ", ".join("--" + n.replace("_", "-") for n in ignored)
        raise click.UsageError(f"--model {name} does not take {flags}")
    try:
        return model(name, **given)
    except ParamError as exc:
        raise click.BadParameter(str(exc), param_hint="--" + exc.name.replace("_", "-")) from None
