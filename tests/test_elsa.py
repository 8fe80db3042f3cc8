"""ELSA and Compressed ELSA: gradients, optimiser, pruning schedule, the one shape and segments."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import random_factors, random_interactions, write_lines

from sparseidx import Index
from sparseidx.errors import DataError
from sparseidx.models._elsa_training import (NAdam, ell_loss_and_gradient, loss_and_gradient, normalise_rows,
                                             output_columns, top_k_rows)
from sparseidx.models.elsa import fit_compressed_elsa, fit_elsa, nnz_schedule, reference_schedule


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 4))
    Xb = sp.csr_matrix((rng.random((5, 12)) < 0.3).astype(float))
    Xb[0, 0] = 1.0
    _, grad = loss_and_gradient(A, Xb)
    num = np.zeros_like(A)
    h = 1e-6
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            Ap, Am = A.copy(), A.copy()
            Ap[i, j] += h
            Am[i, j] -= h
            num[i, j] = (loss_and_gradient(Ap, Xb)[0] - loss_and_gradient(Am, Xb)[0]) / (2 * h)
    assert np.allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_loss_is_the_distance_between_normalised_prediction_and_input():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 3))
    X = np.array([[1, 0, 1, 0, 0, 1], [0, 1, 0, 0, 1, 0]], dtype=float)
    A_hat = A / np.linalg.norm(A, axis=1, keepdims=True)
    Y = X @ A_hat @ A_hat.T - X
    ref = np.mean(np.sum((Y / np.linalg.norm(Y, axis=1, keepdims=True)
                          - X / np.linalg.norm(X, axis=1, keepdims=True)) ** 2, axis=1))
    assert np.isclose(loss_and_gradient(A, sp.csr_matrix(X))[0], ref)


def test_nadam_step_follows_torch_formula():
    p = np.array([1.0, -2.0], dtype=np.float32)
    g = np.array([0.5, 0.25], dtype=np.float32)
    opt = NAdam(p.shape, lr=0.1)
    opt.step(p, g)
    # torch.optim.NAdam, first step: mu_1, mu_2 from momentum_decay 4e-3
    mu1 = 0.9 * (1 - 0.5 * 0.96 ** 0.004)
    mu2 = 0.9 * (1 - 0.5 * 0.96 ** 0.008)
    m, v = 0.1 * g, 0.001 * g * g
    denom = np.sqrt(v / 0.001) + 1e-8
    ref = np.array([1.0, -2.0]) - 0.1 * (1 - mu1) / (1 - mu1) * g / denom - 0.1 * mu2 / (1 - mu1 * mu2) * m / denom
    assert np.allclose(p, ref, rtol=1e-6)


def test_training_lowers_the_loss_and_is_deterministic():
    X = random_interactions(120, 30, density=0.15, seed=3)
    f1 = fit_elsa(X, dims=8, epochs=5, batch_size=32, lr=0.05, seed=7)
    f2 = fit_elsa(X, dims=8, epochs=5, batch_size=32, lr=0.05, seed=7)
    losses = f1.params["losses"]
    assert losses[-1] < losses[0]
    assert np.array_equal(f1.embeddings, f2.embeddings)
    assert np.allclose(np.linalg.norm(f1.embeddings, axis=1), 1.0, atol=1e-5)
    assert f1.model == "elsa" and (f1.priors == 1).all()


@pytest.mark.parametrize("schedule", ["exponential", "linear", "step"])
@pytest.mark.parametrize("rewind", [False, True])
def test_compressed_rows_hold_at_most_k_non_zeros_with_unit_norm(schedule, rewind):
    X = random_interactions(120, 30, density=0.15, seed=4)
    f = fit_compressed_elsa(X, dims=32, nnz_per_item=4, epochs=4, batch_size=32, lr=0.05, schedule=schedule,
                            rewind=rewind, seed=1)
    V = f.embeddings
    assert (np.diff(V.indptr) <= 4).all() and (np.diff(V.indptr) > 0).all()
    assert np.allclose(np.sqrt(np.asarray(V.multiply(V).sum(axis=1)).ravel()), 1.0, atol=1e-5)
    assert f.params["nnz_plan"][-1] == 4 and (f.encoder != f.embeddings).nnz == 0
    scores, ids = Index.build(f).search([[0, 1]], 5, threads=1)  # served by the sparse index
    assert not np.isin([0, 1], ids).any()


def test_schedules_decrease_to_the_target_one_epoch_before_the_end():
    for schedule in ("exponential", "linear", "step"):
        plan = nnz_schedule(4096, 16, 10, schedule)
        assert plan == sorted(plan, reverse=True) and plan[-1] == 16 and plan[0] < 4096
    assert nnz_schedule(4096, 16, 10, "exponential")[-2:] == [16, 16]
    assert nnz_schedule(4096, 16, 10, "linear")[-2:] == [16, 16]
    assert nnz_schedule(4096, 16, 10, "step")[:3] == [2048, 1024, 512]


def test_top_k_rows_and_normalise():
    A = np.array([[3.0, -4.0, 1.0], [0.0, 0.0, 0.0]])
    mask = top_k_rows(A, 2)
    assert mask[0].tolist() == [True, True, False] and mask[1].sum() == 2
    A_hat, norms = normalise_rows(A)
    assert np.allclose(A_hat[0], np.array([3.0, -4.0, 1.0]) / np.sqrt(26.0)) and (A_hat[1] == 0).all()
    assert np.allclose(norms, [np.sqrt(26.0), 1.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"dims": 8, "nnz_per_item": 9}, r"nnz_per_item must be between 1 and dims \(8\), got 9"),
    ({"dims": 8, "nnz_per_item": 2, "schedule": "cosine"}, "schedule must be one of exponential, linear, step"),
    ({"dims": 0, "nnz_per_item": 1}, "dims must be an integer >= 1, got 0"),
    ({"dims": 8, "nnz_per_item": 2, "lr": 0}, "lr must be a finite number > 0, got 0"),
    ({"dims": 8, "nnz_per_item": 2, "rewind": "yes"}, "rewind must be true or false, got 'yes'"),
    ({"dims": 8, "nnz_per_item": 2, "recipe": "paper"}, "recipe must be one of short, reference"),
    ({"dims": 8, "nnz_per_item": 2, "max_output": -1}, r"max_output must be an integer in \[0, 1e\+07\], got -1"),
    ({"dims": 8, "nnz_per_item": 2, "max_output": 10**12}, r"max_output must be an integer in \[0, 1e\+07\]"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(DataError, match=message):
        fit_compressed_elsa(random_interactions(20, 10), **kwargs)
    with pytest.raises(DataError, match="no interactions"):
        fit_elsa(sp.csr_matrix((5, 4)), dims=2)


def test_segments_group_items_by_signed_dominant_dimension_and_rank_by_indicator(tmp_path):
    from click.testing import CliRunner

    from sparseidx.segments import item_segments, rank_segments
    from sparseidx_cli.main import cli

    X = random_interactions(150, 40, density=0.12, seed=8)
    f = fit_compressed_elsa(X, dims=16, nnz_per_item=3, epochs=3, batch_size=64, lr=0.05, seed=2)
    index = Index.build(f)
    segs = item_segments(index)
    assert segs.sizes.sum() == 40 and len(segs.of_item) == 40  # every item in exactly one segment
    V = f.embeddings.toarray()
    dom = np.abs(V).argmax(axis=1)
    sign = np.where(V[np.arange(40), dom] >= 0, "+", "-")
    assert [segs.signed_dims(s) for s in segs.of_item] == [[f"{g}{d}"] for g, d in zip(sign, dom)]
    ranked = rank_segments(index, segs, [0, 1], n_segments=50, k=2)
    u = f.encoder[[0, 1]].toarray().sum(axis=0)  # u = x E for the history of items 0 and 1
    expected = {s: sum((1 if t[0] == "+" else -1) * u[int(t[1:])] for t in segs.signed_dims(s))
                for s in range(len(segs.sizes))}
    assert [r["segment"] for r in ranked] == sorted((s for s in expected if expected[s] > 0),
                                                     key=lambda s: (-expected[s], s))
    assert all(r["score"] == pytest.approx(expected[r["segment"]]) for r in ranked)
    for r in ranked:
        assert all(segs.of_item[it["item_id"]] == r["segment"] and it["item_id"] not in (0, 1) for it in r["items"])
    write_lines(tmp_path / "train.txt", X)
    index.write(tmp_path / "c.idx")
    (tmp_path / "titles.tsv").write_text("".join(f"{i}\ttitle {i}\n" for i in range(40)))
    runner = CliRunner()
    res = runner.invoke(cli, ["segments", str(tmp_path / "c.idx"), "--titles", str(tmp_path / "titles.tsv"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_items"] == 40 and out["segments"][0]["name"].startswith("title ")
    res = runner.invoke(cli, ["query", str(tmp_path / "c.idx"), "--history", "0", "1", "--segments", "2", "-k", "2",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["segments"]) == min(2, len(ranked))
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    res = runner.invoke(cli, ["segments", str(tmp_path / "c.idx"), "--titles", str(tmp_path / "bad.tsv")])
    assert res.exit_code == 1 and "line 1" in res.output


def test_merged_segments_hold_their_groups_and_score_by_the_normalised_indicator(tmp_path):
    from click.testing import CliRunner

    from sparseidx.segments import item_segments, rank_segments, read_merges
    from sparseidx_cli.main import cli

    X = random_interactions(150, 40, density=0.12, seed=8)
    f = fit_compressed_elsa(X, dims=16, nnz_per_item=3, epochs=3, batch_size=64, lr=0.05, seed=2)
    index = Index.build(f)
    alone = item_segments(index)
    a, b = np.argsort(-alone.sizes)[:2]  # the two largest groups join into one named segment
    keys = alone.signed_dims(a) + alone.signed_dims(b)
    (tmp_path / "merges.tsv").write_text(f"# merged by hand\nBig two\t{' '.join(keys)}\n\n")
    segs = item_segments(index, merges=read_merges(str(tmp_path / "merges.tsv")))
    assert segs.names[0] == "Big two" and segs.signed_dims(0) == keys
    assert len(segs.sizes) == len(alone.sizes) - 1 and segs.sizes[0] == alone.sizes[a] + alone.sizes[b]
    members = np.flatnonzero(segs.of_item == 0)
    assert sorted(members) == sorted(np.flatnonzero((alone.of_item == a) | (alone.of_item == b)))
    u = f.encoder[[5, 9]].toarray().sum(axis=0)
    expected = sum((1 if t[0] == "+" else -1) * u[int(t[1:])] for t in keys) / np.sqrt(2)
    assert segs.matrix[0].toarray().ravel() @ u == pytest.approx(expected)
    ranked = rank_segments(index, segs, [5, 9], n_segments=len(segs.sizes), k=3)
    assert (expected > 0) == any(r["segment"] == 0 for r in ranked)
    assert all(r["score"] > 0 for r in ranked)
    index.write(tmp_path / "c.idx")
    res = CliRunner().invoke(cli, ["segments", str(tmp_path / "c.idx"), "--merges", str(tmp_path / "merges.tsv"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert {"segment": 0, "dims": " ".join(keys), "size": int(segs.sizes[0]), "name": "Big two"} in \
        json.loads(res.stdout)["segments"]


@pytest.mark.parametrize("text, message", [
    ("Fantasy +1 +2\n", "line 1: expected 'name<TAB>signed dimensions'"),
    ("Fantasy\t\n", "line 1: expected 'name<TAB>signed dimensions'"),
    ("# c\nFantasy\t+1 7\n", "line 2: '7' is not a signed dimension; write +12 or -305"),
    ("Fantasy\t+1 -1\n", "listed twice or with both signs"),
    ("Fantasy\t+1\nMagic\t+1 +2\n", "line 2: dimension +1 is already in segment 'Fantasy'"),
    ("Fantasy\t+16\n", "dimension 16 is out of range (the index has 16)"),
])
def test_a_bad_merge_file_is_one_line_that_says_where(tmp_path, text, message):
    from click.testing import CliRunner

    from sparseidx_cli.main import cli

    X = random_interactions(150, 40, density=0.12, seed=8)
    Index.build(fit_compressed_elsa(X, dims=16, nnz_per_item=3, epochs=1, seed=2)).write(tmp_path / "c.idx")
    (tmp_path / "m.tsv").write_text(text)
    res = CliRunner().invoke(cli, ["segments", str(tmp_path / "c.idx"), "--merges", str(tmp_path / "m.tsv")])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["query", str(tmp_path / "c.idx"), "--history", "1",
                                   "--merges", str(tmp_path / "m.tsv")])
    assert res.exit_code == 2 and "--merges applies to --segments N" in res.output


@pytest.mark.parametrize("name", ["chol", "sansa"])
def test_segments_refuse_indexes_with_one_dimension_per_item(tmp_path, name):
    from click.testing import CliRunner

    from sparseidx.models import model
    from sparseidx_cli.main import cli

    X = random_interactions(150, 40, density=0.12, seed=8)
    Index.build(model(name, l2=5.0).fit(X).factors_).write(tmp_path / "i.idx")
    for args in (["segments", str(tmp_path / "i.idx")], ["query", str(tmp_path / "i.idx"), "--history", "1",
                                                         "--segments", "3"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1 and "segments need latent-factor dimensions" in res.output
        assert "one dimension per item" in res.output and "--model celsa" in res.output


def test_segments_refuse_imported_embeddings_with_as_many_dimensions_as_items():
    from sparseidx.segments import item_segments

    with pytest.raises(DataError, match=r"as many dimensions as items \(40 for 30\)"):
        item_segments(Index.build(random_factors(1, 30, 40, 0.2)))

def test_cli_builds_elsa_on_faiss_and_celsa_sparse(tmp_path):
    from click.testing import CliRunner

    from sparseidx_cli.main import cli

    write_lines(tmp_path / "train.txt", random_interactions(100, 30, seed=9))
    runner = CliRunner()
    res = runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--model", "elsa", "--dims", "8", "--epochs", "2",
                              "--batch-size", "32", "--out", str(tmp_path / "e.idx")])
    assert res.exit_code == 0, res.output
    assert Index.open(tmp_path / "e.idx").backend == "faiss"
    res = runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--model", "celsa", "--dims", "16",
                              "--nnz-per-item", "4", "--epochs", "2", "--batch-size", "32", "--schedule", "linear",
                              "--rewind", "--out", str(tmp_path / "c.idx")])
    assert res.exit_code == 0, res.output
    idx = Index.open(tmp_path / "c.idx")
    assert idx.backend == "sparse" and idx.manifest["params"]["rewind"] is True
    res = runner.invoke(cli, ["build", str(tmp_path / "train.txt"), "--model", "celsa", "--dims", "16",
                              "--nnz-per-item", "4", "--epochs", "2", "--batch-size", "32", "--recipe", "reference",
                              "--max-output", "20", "--out", str(tmp_path / "r.idx")])
    assert res.exit_code == 0, res.output
    params = Index.open(tmp_path / "r.idx").manifest["params"]
    assert params["recipe"] == "reference" and params["rewind"] is True and params["nnz_plan"] == [16, 5, 4]


def _reference_loss(A, X, columns, clip, column_mean):
    """The reference's loss from its definition: output columns repeated as drawn, ReLU6, Keras's NMSE."""
    A_hat = A / np.linalg.norm(A, axis=1, keepdims=True)
    Y = (X @ A_hat @ A_hat.T - X)[:, columns]
    if clip:
        Y = np.clip(Y, 0, clip)
    T = X[:, columns]
    norm = np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)
    per_user = np.sum((Y / norm - T / np.linalg.norm(T, axis=1, keepdims=True)) ** 2, axis=1)
    return float(np.mean(per_user / (len(columns) if column_mean else 1)))


@pytest.mark.parametrize("clip, column_mean", [(0.0, False), (6.0, True), (0.3, True)])
def test_sampled_clipped_loss_matches_its_definition_and_finite_differences(clip, column_mean):
    rng = np.random.default_rng(5)
    A = rng.normal(size=(14, 5))
    X = (rng.random((6, 14)) < 0.3).astype(float)
    X[:, 0] = 1.0
    drawn = [0, 3, 3, 7, 7, 7, 12, *np.flatnonzero(X.any(axis=0))]  # repeats: drawn with replacement
    columns, counts = np.unique(drawn, return_counts=True)
    args = (sp.csr_matrix(X), columns, counts.astype(np.float32), clip, column_mean)
    value, grad = loss_and_gradient(A, *args)
    assert np.isclose(value, _reference_loss(A, X, drawn, clip, column_mean))
    num = np.zeros_like(A)
    for i, j in np.ndindex(*A.shape):
        Ap, Am = A.copy(), A.copy()
        Ap[i, j] += 1e-6
        Am[i, j] -= 1e-6
        num[i, j] = (loss_and_gradient(Ap, *args)[0] - loss_and_gradient(Am, *args)[0]) / 2e-6
    assert np.allclose(grad, num, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sampled", [False, True])
def test_sparse_rows_give_the_dense_loss_and_gradient_on_their_entries(sampled):
    rng = np.random.default_rng(6)
    n, dims, k = 40, 24, 6  # 6: four entries at a time, then two
    cols = np.sort(np.stack([rng.choice(dims, k, replace=False) for _ in range(n)]), axis=1).astype(np.int32)
    vals = rng.normal(size=(n, k)).astype(np.float32)
    A = np.zeros((n, dims), dtype=np.float32)
    np.put_along_axis(A, cols, vals, axis=1)
    Xb = sp.csr_matrix((rng.random((9, n)) < 0.2).astype(np.float32))
    columns, weights = (np.array([1, 2, 5, 30, 33]), np.array([1, 2, 1, 3, 1], np.float32)) if sampled else (None, None)
    dense_value, dense_grad = loss_and_gradient(A.astype(np.float64), Xb, columns, weights, 6.0, sampled)
    value, grad = ell_loss_and_gradient(cols, vals, Xb, dims, columns, weights, 6.0, sampled)
    assert np.isclose(value, dense_value, rtol=1e-5)
    assert np.allclose(grad, np.take_along_axis(dense_grad, cols, axis=1), rtol=1e-4, atol=1e-6)


def test_nadam_with_keras_settings_follows_the_keras_formula():
    p0 = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    grads = [np.array([0.5, 0.25, -1.0], np.float32), np.array([-0.1, 0.3, 0.2], np.float32)]
    p = p0.copy()
    opt = NAdam(p.shape, lr=0.1, eps=1e-7, momentum_decay=1.0)
    for g in grads:
        opt.step(p, g)
    # keras/src/optimizers/nadam.py update_step, written out
    ref, m, v, u_product = p0.astype(np.float64), 0.0, 0.0, 1.0
    for t, g in enumerate(grads, start=1):
        cache_t, cache_t1 = 0.9 * (1 - 0.5 * 0.96 ** t), 0.9 * (1 - 0.5 * 0.96 ** (t + 1))
        u_t = u_product * cache_t
        u_t1 = u_t * cache_t1
        u_product = u_t
        m = m + (g - m) * 0.1
        v = v + (g * g - v) * 0.001
        m_hat = cache_t1 * m / (1 - u_t1) + (1 - cache_t) * g / (1 - u_t)
        ref = ref - 0.1 * m_hat / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-7)
    assert np.allclose(p, ref, rtol=1e-5)


def test_nadam_keeps_masked_entries_at_zero():
    p = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    keep = p != 0
    NAdam(p.shape, lr=0.1).step(p, np.ones_like(p), keep)
    assert p[0, 1] == 0 and p[1, 0] == 0 and p[0, 0] < 1 and p[1, 1] < 2


def test_reference_schedule_is_the_authors_code():
    # experiment_compressed_elsa.py: step = (start - target) // (epochs * (len(vals) - 1)),
    # k_i = int(factors * 2 ** -(1 + i / epochs)) for i in range(len(range(start, target + step, -step)))
    for factors, vals in [(4096, [0, 1024, 512, 256, 128, 64, 32, 16]), (4096, [0, 1024, 512, 256, 128, 64, 32]),
                          (1024, [0, 256, 128, 64, 32, 16]), (4096, [0, 1024, 512, 256, 128, 64, 32, 16, 8])]:
        epochs, target = 10, vals[-1]
        step = (factors - target) // (epochs * (len(vals) - 1))
        stages = len(range(factors, target + step, -step))
        authors = [factors] + [int(factors * 2 ** -(1 + i / epochs)) for i in range(1, stages)]
        assert reference_schedule(factors, target, epochs) == authors
    plan = reference_schedule(4096, 16, 10)
    assert len(plan) == 70 and plan[:2] == [4096, 1910] and plan[10] == 1024 and plan[-1] == 17


def test_output_columns_are_the_batch_items_plus_untouched_negatives_drawn_with_replacement():
    Xb = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0]], dtype=np.float32))
    columns, weights = output_columns(Xb, 8, 20, np.random.default_rng(0))
    assert columns[:3].tolist() == [0, 2, 3] and (weights[:3] == 1).all()
    assert set(columns[3:].tolist()) <= {1, 4, 5, 6, 7} and weights.sum() == 20
    columns, weights = output_columns(Xb, 8, 2, np.random.default_rng(0))
    assert weights.sum() == 4 and columns.size == 4  # one negative at least
    assert output_columns(Xb, 8, 0, np.random.default_rng(0)) == (None, None)


def test_the_reference_recipe_trains_its_stages_and_ends_sparse():
    X = random_interactions(150, 40, density=0.15, seed=8)
    f = fit_compressed_elsa(X, dims=64, nnz_per_item=4, epochs=2, batch_size=32, recipe="reference",
                            max_output=30, seed=2)
    plan = reference_schedule(64, 4, 2)
    assert f.params["nnz_plan"] == plan + [4] and len(f.params["losses"]) == len(plan) + 2
    V = f.embeddings
    assert (np.diff(V.indptr) == 4).all()
    assert np.allclose(np.sqrt(np.asarray(V.multiply(V).sum(axis=1)).ravel()), 1.0, atol=1e-5)
    again = fit_compressed_elsa(X, dims=64, nnz_per_item=4, epochs=2, batch_size=32, recipe="reference",
                                max_output=30, seed=2)
    assert (again.embeddings != V).nnz == 0


@pytest.mark.parametrize("name", ["short", "reference"])
def test_sparse_passes_train_the_rows_the_dense_passes_train(name, monkeypatch):
    from sparseidx.models import _elsa_training

    # at 2 non-zeros per item many users' clipped residuals are float32 noise around 0, which the
    # normalisation amplifies; 4 keeps both paths apart from such users
    X = random_interactions(120, 50, density=0.12, seed=9)
    kwargs = dict(dims=64, nnz_per_item=4, epochs=3, batch_size=40, recipe=name, max_output=25, seed=3)
    sparse_passes = fit_compressed_elsa(X, **kwargs)
    monkeypatch.setattr(_elsa_training, "SPARSE_BELOW", 10**6)  # dense arrays with masks throughout
    dense_passes = fit_compressed_elsa(X, **kwargs)
    assert sparse_passes.params["nnz_plan"] == dense_passes.params["nnz_plan"]
    assert min(sparse_passes.params["nnz_plan"]) * 8 <= 64  # the sparse passes did run
    assert np.allclose(sparse_passes.params["losses"], dense_passes.params["losses"], rtol=1e-5)
    assert np.allclose(sparse_passes.embeddings.toarray(), dense_passes.embeddings.toarray(), atol=1e-4)
