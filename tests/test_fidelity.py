"""Where the code departs from the papers' setting, the switch back: --binarize and the UMR log line."""

import numpy as np
import scipy.sparse as sp
from click.testing import CliRunner

from sparseidx import Index
from sparseidx.data import load_interactions
from sparseidx_cli.main import cli

CSV = "user,item,rating\n1,10,5\n1,11,0.5\n2,10,3\n2,10,2\n2,12,4\n3,11,1\n3,12,2\n"


def test_binarize_makes_every_pair_one_and_weights_are_used_as_given_without_it(tmp_path):
    (tmp_path / "r.csv").write_text(CSV)
    weighted = load_interactions(tmp_path / "r.csv").X.toarray()
    binary = load_interactions(tmp_path / "r.csv", binarize=True).X.toarray()
    assert np.allclose(weighted, [[5, 0.5, 0], [5, 0, 4], [0, 1, 2]])  # the repeated pair (2, 10) is summed
    assert np.array_equal(binary, (weighted != 0).astype(np.float32))


def test_build_binarize_equals_building_from_the_01_lines(tmp_path):
    (tmp_path / "r.csv").write_text(CSV)
    (tmp_path / "r.txt").write_text("1 10 11\n2 10 12\n3 11 12\n")
    runner = CliRunner()
    for name, args in (("bin", ["r.csv", "--binarize"]), ("lines", ["r.txt"]), ("weighted", ["r.csv"])):
        res = runner.invoke(cli, ["build", str(tmp_path / args[0]), *args[1:], "--l2", "1", "--out",
                                  str(tmp_path / f"{name}.idx")])
        assert res.exit_code == 0, res.output
    Q = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    got = {n: Index.open(tmp_path / f"{n}.idx").search(Q, 2, threads=1)[0] for n in ("bin", "lines", "weighted")}
    assert np.allclose(got["bin"], got["lines"]) and not np.allclose(got["weighted"], got["lines"])
    assert "used as given" in runner.invoke(cli, ["build", "--help"]).output


def test_umr_scan_loss_is_what_the_scan_met_and_its_log_says_so(caplog):
    from helpers import random_interactions, residual_loss

    from sparseidx.models._icf import incomplete_cholesky
    from sparseidx.models._umr import residual, sparsify_global, umr_inverse

    X = random_interactions(150, 60, density=0.1, seed=9)
    A = (X.T @ X + 3.0 * sp.identity(60)).tocsc()
    L = incomplete_cholesky(A, budget=59)
    L = sp.csc_matrix(L @ sp.diags(1 / L.diagonal()))
    K0 = sparsify_global(sp.csc_matrix(2 * sp.identity(60, format="csc") - L), 900)
    with caplog.at_level("INFO"):
        _, losses = umr_inverse(L, max_nnz=900, scans=1, finetune_steps=0, block=60)
    assert np.isclose(losses[0], residual_loss(residual(L, K0))[0])  # one block: the loss before the scan
    assert "as the scan met them" in caplog.text and "before the scan" not in caplog.text
