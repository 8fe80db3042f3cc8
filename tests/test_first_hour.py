"""A newcomer's first hour: progress on every long step, and the small frictions of the command line."""

import json
import logging
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from helpers import random_interactions, write_lines

from sparseidx import progress
from sparseidx.errors import MissingDependencyError, require
from sparseidx_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def records(monkeypatch):
    """The sparseidx logger's records at INFO, with a heartbeat of 20 ms and no terminal bars."""
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.02)
    monkeypatch.setattr(progress, "_bars_enabled", False)
    monkeypatch.setattr(progress._watchdog, "enabled", False)  # the thread beats: records see it
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    monkeypatch.setattr(progress.log, "handlers", [handler])
    level = progress.log.level
    progress.log.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the logger's cache
    yield seen
    progress.log.setLevel(level)


def test_a_long_single_call_reports_elapsed_time_while_it_runs(records):
    with progress.stage("Cholesky inversion"):
        time.sleep(0.15)  # one long call that reports nothing itself
    beats = [m for m in records if m.startswith("Cholesky inversion ...") and m.endswith("elapsed")]
    assert records[0] == "Cholesky inversion ..." and records[-1].startswith("Cholesky inversion done in")
    assert len(beats) >= 3, records


def test_countable_work_logs_share_rate_and_eta_when_no_terminal_shows_a_bar(records):
    with progress.counter(1000, "evaluating users") as bar:
        for _ in range(10):
            time.sleep(0.01)
            bar.update(100)
    lines = [m for m in records if m.startswith("evaluating users: ") and "ETA" in m]
    assert lines, records
    done, total = lines[-1].split(": ")[1].split(" (")[0].split(" / ")
    assert total == "1,000" and 0 < int(done.replace(",", "")) < 1000 and "/s" in lines[-1]
    assert records[-1].startswith("evaluating users: 1,000 done in")


def test_evaluate_reports_progress_in_logs(records, tmp_path, monkeypatch):
    from sparseidx import Index, evaluate, fit_cholesky

    X = random_interactions(300, 40, seed=4)
    index = Index.build(fit_cholesky(X, l2=5.0, k=10))
    write_lines(tmp_path / "train.txt", X)
    write_lines(tmp_path / "test.txt", X)
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.0)  # a line after every batch, however fast
    evaluate(index, str(tmp_path / "train.txt"), str(tmp_path / "test.txt"), batch_size=10)
    assert any(m.startswith("evaluating users: ") for m in records), records


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("first-hour")
    write_lines(d / "train.txt", random_interactions(60, 30, seed=5))
    assert run("build", d / "train.txt", "--out", d / "idx", "--l2", 5, "--k", 5).exit_code == 0
    return d


def test_quiet_silences_the_empty_history_note(small_index):
    assert "empty history" in run("query", small_index / "idx", "--history").output
    res = run("-q", "query", small_index / "idx", "--history")
    assert res.exit_code == 0 and "empty history" not in res.output


def test_json_gives_history_ids_typed_like_the_returned_ones(small_index):
    payload = json.loads(run("query", small_index / "idx", "--history", "1,2", 3, "--json").stdout)
    assert payload["history"] == [1, 2, 3]
    assert all(isinstance(r["item_id"], int) for r in payload["items"])


def test_the_index_named_after_the_history_gets_a_hint(small_index):
    res = run("query", "--history", 17, 42, small_index / "idx")
    assert res.exit_code == 2 and "the index comes first" in res.output, res.output


def test_faiss_knobs_on_a_sparse_index_and_back_are_usage_errors(small_index, tmp_path):
    res = run("query", small_index / "idx", "--history", 1, "--ef-search", 10)
    assert res.exit_code == 2 and "--ef-search applies to FAISS indexes; this index is sparse" in res.output
    assert run("build", small_index / "train.txt", "--model", "puresvd", "--dims", 4, "--out",
               tmp_path / "svd").exit_code == 0
    res = run("query", tmp_path / "svd", "--history", 1, "--prune", 0.01)
    assert res.exit_code == 2 and "--prune applies to sparse indexes; this index is FAISS" in res.output
    res = run("evaluate", tmp_path / "svd", "--train", small_index / "train.txt", "--test",
              small_index / "train.txt", "--budget", 5, "--candidates", 10)
    assert res.exit_code == 2 and "--budget, --candidates apply to sparse indexes" in res.output


def test_install_hints_name_commands_that_work_from_a_clone():
    with pytest.raises(MissingDependencyError) as exc:
        require("sparseidx_no_such_module", "bench", "the Seismic peer")
    message = str(exc.value)
    assert "pip install -e '.[bench]'" in message and "make bench-setup" in message
    assert "pip install 'sparseidx[" not in message


def test_every_command_help_teaches_with_examples():
    for command in ("build", "query", "evaluate", "info", "verify", "export", "segments", "bench"):
        res = run(command, "--help")
        assert res.exit_code == 0 and "Example" in res.output and f"sparseidx {command}" in res.output, command
    build_help = " ".join(run("build", "--help").output.split())
    for shown in ("chol, sansa, chol-lowrank: L2 regularisation lambda; > 0 [default: 200; 20 for sansa]",
                  "nor nnz_per_item is given: 0.0005); in (0, 1]", "[default: 256; 1024 for celsa]",
                  "--order [popularity|cooccurrence|none]", "[default: 16 for celsa]"):
        assert shown in build_help, shown


def test_the_heartbeat_runs_while_lapack_factorizes(records):
    """LAPACK runs without the GIL: the stage reports while potrf/potri work (scipy's wrappers kept it)."""
    from sparseidx.models.cholesky import gram_inverse

    X = random_interactions(300, 5000, density=0.01, seed=6)
    gram_inverse(X, 5.0)
    stage = "Cholesky inversion (potrf + potri)"
    seconds = float(next(m for m in records if m.startswith(f"{stage} done in")).split()[-2])
    beats = [m for m in records if m.startswith(f"{stage} ...") and m.endswith("elapsed")]
    assert seconds > 0.2 and len(beats) >= max(3, int(0.25 * seconds / progress.HEARTBEAT_SECONDS)), (seconds, beats)


HOLD_THE_GIL = """
import sys, time
from sparseidx import progress
progress.HEARTBEAT_SECONDS = 0.1
progress.enable(1)
progress._watchdog.enabled = {watchdog}
sys.setswitchinterval(100)  # as a C call holding the GIL (CHOLMOD does): no other thread runs
with progress.stage("factorizing"):
    end = time.perf_counter() + 1.2
    while time.perf_counter() < end:
        pass
"""


@pytest.mark.parametrize("watchdog, beats", [(True, 5), (False, 0)])
def test_the_cli_heartbeat_goes_on_while_a_c_call_holds_the_gil(watchdog, beats):
    """With enable() (the CLI) a watchdog process beats for the stage; a thread alone could not."""
    err = subprocess.run([sys.executable, "-c", HOLD_THE_GIL.format(watchdog=watchdog)], capture_output=True,
                         text=True, timeout=60).stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("factorizing ... ") and ln.endswith("elapsed")]
    assert (len(lines) >= beats) if beats else not lines, err
    assert err.splitlines()[-1].startswith("factorizing done in")
