"""Exports of hostile input: ids with delimiters and escapes, a model name that is code, outputs that
sparseidx did not write, and exports that fail half-way. Files are read back with parsers of their own."""

import glob
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_lines
from helpers import random_factors, random_histories

from sparseidx import Factors, Index
from sparseidx.errors import DataError, OutputError
from sparseidx.export import STORES, TARGETS, export
from sparseidx.export import parquet as parquet_export

HOSTILE_IDS = ["a\tb", "c\nd", "\\N", "e\\f", "quote\"'", "semi;drop table x;--", "ünï", " lead space",
               "g\rh", "\\.", "i\\tj", "$(touch PWNED)"]
EVIL_MODEL = 'x"""\nimport os; os.system("touch PWNED")\n"""'
N_DIMS = 20
FEAST_BIN = os.environ.get("SPARSEIDX_FEAST_BIN") or shutil.which("feast")
FEAST_BIN = FEAST_BIN and os.path.abspath(FEAST_BIN)


@pytest.fixture(params=["in memory", "reopened"])
def hostile(request, tmp_path):
    """An index whose item ids are HOSTILE_IDS and whose manifest names the model EVIL_MODEL."""
    f = random_factors(3, len(HOSTILE_IDS), N_DIMS, 0.3)
    f = Factors(encoder=f.encoder, embeddings=f.embeddings, priors=f.priors, item_ids=np.array(HOSTILE_IDS))
    index = Index.build(f)
    index.manifest["model"] = EVIL_MODEL
    if request.param == "reopened":
        index.write(tmp_path / "idx")
        index = Index.open(tmp_path / "idx")
    return index, f


@pytest.fixture
def index():
    return Index.build(random_factors(21, 40, N_DIMS, 0.2))


def out_path(tmp_path, target):
    ext = {"feast": "", "parquet": ".parquet", "milvus": ".parquet", "pgvector": ".tsv", "elasticsearch": ".ndjson"}
    return tmp_path / f"out{ext.get(target, '.jsonl')}"


def run_export(index, target, out, **options):
    return export(index, target, str(out), **options)


def expected_rows(f, folded):
    V = f.embeddings
    scale = f.priors if folded else np.ones(V.shape[0])
    return [dict(zip(V.indices[V.indptr[i]: V.indptr[i + 1]].tolist(), V.data[V.indptr[i]: V.indptr[i + 1]] * scale[i]))
            for i in range(V.shape[0])]


def assert_same_vectors(rows, f, folded=False):
    """The rows hold V (or prior * V, as the store targets write it); explicit zeros and the presence dim aside."""
    for got, want in zip(rows, expected_rows(f, folded), strict=True):
        got = {d: v for d, v in got.items() if v != 0 and d < N_DIMS}
        assert sorted(got) == list(want) and np.allclose([got[d] for d in want], list(want.values()), rtol=1e-6)


# ---- independent readers: (item ids, rows as {dim: value}) ----------------------------------------------------

def json_lines(path):
    return [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]


def read_parquet_rows(path, id_col="item_id", ind="indices", val="values"):
    table = pq.read_table(path)
    assert table.schema.field(id_col).type == pa.string()
    return table[id_col].to_pylist(), [dict(zip(i, v)) for i, v in zip(table[ind].to_pylist(),
                                                                          table[val].to_pylist())]


def read_milvus(path):
    table = pq.read_table(path)
    assert table.schema.field("item_id").type == pa.string()
    assert json.loads(table.schema.metadata[b"sparseidx"])["kind"] == "milvus"
    cells = table["embedding"].to_pylist()
    if isinstance(cells[0], list):  # a dense FLOAT_VECTOR (signed weights)
        return table["item_id"].to_pylist(), [dict(enumerate(c)) for c in cells]
    return table["item_id"].to_pylist(), [dict(zip(c["indices"], c["values"])) for c in cells]


def read_qdrant(path):
    points = json_lines(path)
    return [p["payload"]["item_id"] for p in points], [
        dict(zip(p["vector"]["embedding"]["indices"], p["vector"]["embedding"]["values"])) for p in points]


def read_vespa(path):
    docs = json_lines(path)
    ids = [d["fields"]["item_id"] for d in docs]
    assert [d["put"] for d in docs] == [f"id:sparseidx:item::{i}" for i in ids]
    return ids, [{int(k): v for k, v in d["fields"]["embedding"].items()} for d in docs]


def read_elasticsearch(path):
    lines = json_lines(path)
    actions, docs = lines[::2], lines[1::2]
    assert [a["index"]["_id"] for a in actions] == [d["item_id"] for d in docs]
    return [d["item_id"] for d in docs], [{int(e.split(":")[0]): float(e.split(":")[1]) for e in d["embedding"]}
                                          for d in docs]


def parse_sparsevec(text):
    body, n = re.fullmatch(r"\{(.*)\}/(\d+)", text).groups()
    assert int(n) == N_DIMS
    pairs = [p.split(":") for p in body.split(",") if p]
    return {int(i) - 1: float(v) for i, v in pairs}


def read_pgvector(path):
    rows = decode_copy_text(path.read_bytes().decode("utf-8"))
    assert all(len(r) == 2 for r in rows), rows
    return [r[0] for r in rows], [parse_sparsevec(r[1]) for r in rows]


def read_feast(path):
    return read_parquet_rows(path / "data" / "items.parquet")


READERS = {"parquet": read_parquet_rows, "milvus": read_milvus, "qdrant": read_qdrant, "vespa": read_vespa,
           "elasticsearch": read_elasticsearch, "pgvector": read_pgvector, "feast": read_feast}

# PostgreSQL's COPY text format (docs, "COPY: Text Format"): rows end at an unescaped newline, CR or CRLF;
# columns are split at the unescaped delimiter; \b \f \n \r \t \v, \digits (octal), \xhex and \<any char>
# are escapes; a column that is exactly \N is NULL; a line \. ends the data.
_COPY_TOKEN = re.compile(r"\\(?:[0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)|\r\n|.", re.S)
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _copy_unescape(token):
    if not token.startswith("\\") or len(token) == 1:
        return token
    body = token[1:]
    if body[0] in "01234567":
        return chr(int(body, 8))
    if body[0] == "x" and len(body) > 1:
        return chr(int(body[1:], 16))
    return _COPY_ESCAPES.get(body, body)


def decode_copy_text(text, delimiter="\t"):
    """Rows of COPY text-format data as lists of str (None for NULL)."""
    rows, fields, raw = [], [], []
    for token in _COPY_TOKEN.findall(text):
        if token in ("\n", "\r", "\r\n", delimiter):
            fields.append(None if "".join(raw) == "\\N" else "".join(map(_copy_unescape, raw)))
            raw = []
            if token != delimiter:
                if fields == ["\\."]:
                    break
                rows.append(fields)
                fields = []
        else:
            raw.append(token)
    assert not raw and not fields, "the data does not end with a newline"
    return rows


def test_the_copy_decoder_follows_the_postgresql_rules():
    assert decode_copy_text("a\\tb\t\\N\n\\\\N\tx\\\\y\r\n\\101\\x42\\q\t\n") == [
        ["a\tb", None], ["\\N", "x\\y"], ["ABq", ""]]


# ---- string ids in every target (item 14, 15) ----------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_hostile_string_ids_round_trip_exactly_through_every_target(hostile, target, tmp_path):
    idx, f = hostile
    out = out_path(tmp_path, target)
    run_export(idx, target, out)
    ids, rows = READERS[target](out)
    assert ids == HOSTILE_IDS
    assert_same_vectors(rows, f, folded=target in STORES)


def test_user_export_with_string_user_and_item_ids(tmp_path):
    f = random_factors(5, 30, N_DIMS, 0.2)
    f = Factors(encoder=f.encoder, embeddings=f.embeddings, priors=f.priors,
                item_ids=np.array([f"item-{i}" for i in range(30)]))
    X = random_histories(0, 6, 30, 4)
    write_lines(tmp_path / "h.txt", X, user_ids=np.array([f"user-{u}" for u in range(6)]), item_ids=f.item_ids)
    Index.build(f).write(tmp_path / "idx")  # reopened, its string ids are an object array
    summary = export(Index.open(tmp_path / "idx"), "parquet", str(tmp_path / "items.parquet"),
                     users=str(tmp_path / "h.txt"))
    assert summary["users"]["users"] == 6
    users, rows = read_parquet_rows(tmp_path / "items.users.parquet", "user_id")
    assert users == [f"user-{u}" for u in range(6)]
    U = (X @ f.encoder).toarray()
    for q, row in enumerate(rows):
        assert np.allclose([U[q, d] for d in row], list(row.values()), rtol=1e-5)


# ---- PostgreSQL itself reads the COPY file --------------------------------------------------------------------

def _pg_program(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture
def postgres():
    """psql's argv for a throw-away PostgreSQL cluster that listens on a unix socket only (no TCP).

    The cluster lives in a fresh directory under the system temporary directory (pytest's tmp_path
    is private to its user, and the server refuses to run as root, so it runs as ``postgres`` then).
    """
    initdb, pg_ctl, psql = map(_pg_program, ("initdb", "pg_ctl", "psql"))
    if not (initdb and pg_ctl and psql):
        pytest.fail("PostgreSQL is not installed: run the tests with 'make test' (scripts/setup.sh installs it)")
    run_as = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' user to run the server as "
                        "(Debian's postgresql package creates it: 'make test' installs it)")
        run_as = ["runuser", "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="sparseidx-pg-")
    if run_as:
        os.chown(base, user.pw_uid, user.pw_gid)
    data = os.path.join(base, "data")
    try:
        subprocess.run([*run_as, initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"],
                       check=True, capture_output=True)
        subprocess.run([*run_as, pg_ctl, "-D", data, "-l", os.path.join(base, "server.log"), "-w", "-o",
                        f"-c listen_addresses='' -c unix_socket_directories={base}", "start"],
                       check=True, capture_output=True)
        yield [psql, "-X", "-q", "-h", base, "-U", "postgres", "-d", "postgres"]
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_copies_the_pgvector_file_with_exact_ids(hostile, postgres, tmp_path):
    idx, f = hostile
    out = tmp_path / "it's a;file $(x).tsv"
    summary = run_export(idx, "pgvector", out)
    command = shlex.split(summary["next"])
    assert command[0] == "psql" and command[-2:] == ["<", str(out)]
    with_vector = subprocess.run([*postgres, "-c", "CREATE EXTENSION vector"], capture_output=True).returncode == 0
    if not with_vector:  # pgvector is not packaged for this PostgreSQL: the vectors load as text, not by the .sql
        subprocess.run([*postgres, "-c", "CREATE TABLE items (item_id text PRIMARY KEY, embedding text)"],
                       check=True, capture_output=True)
        command = [arg for arg in command if arg not in ("-f", command[command.index("-f") + 1])]
    with open(out, "rb") as stdin:
        subprocess.run([*postgres, *command[1:-2]], stdin=stdin, check=True, capture_output=True)
    got = subprocess.run([*postgres, "-At", "-c", "SELECT json_agg(json_build_array(item_id, embedding::text) "
                          "ORDER BY item_id) FROM items"], check=True, capture_output=True, text=True).stdout
    rows = dict(json.loads(got))
    assert sorted(rows) == sorted(HOSTILE_IDS)
    assert_same_vectors([parse_sparsevec(rows[item]) for item in HOSTILE_IDS], f, folded=True)


# ---- nothing from the index becomes code or shell (item 8) ----------------------------------------------------

FEAST_STUB = """\
class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


Entity = FeatureView = Field = FileSource = Array = _Recorded
Float32 = Int32 = None


class ValueType:
    INT64 = "INT64"
    STRING = "STRING"
"""


def test_feast_features_py_holds_a_hostile_model_name_as_data(hostile, tmp_path):
    idx, _ = hostile
    run_export(idx, "feast", tmp_path / "repo")
    stub = tmp_path / "stub" / "feast"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(FEAST_STUB)
    (stub / "types.py").write_text("from . import Array, Float32, Int32\n")
    script = ("import json, runpy; g = runpy.run_path('features.py'); "
              "print(json.dumps([g['MODEL'], g['N_DIMS'], g['__doc__'], g['item_embeddings'].kwargs['description']]))")
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "repo", capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "stub")})
    assert not list(tmp_path.rglob("PWNED")), "features.py ran code from the index's manifest"
    assert res.returncode == 0, res.stderr
    model, n_dims, doc, description = json.loads(res.stdout)
    assert model == EVIL_MODEL and n_dims == N_DIMS and "PWNED" not in doc and EVIL_MODEL in description


@pytest.mark.skipif(FEAST_BIN is None, reason="needs Feast: set SPARSEIDX_FEAST_BIN (make test does)")
def test_feast_apply_and_online_read_with_hostile_ids_and_model(hostile, tmp_path):
    idx, f = hostile
    repo = tmp_path / "repo"
    run_export(idx, "feast", repo)
    env = {**os.environ, "FEAST_USAGE": "False"}
    subprocess.run([FEAST_BIN, "apply"], cwd=repo, check=True, env=env, capture_output=True)
    subprocess.run([FEAST_BIN, "materialize-incremental", "2100-01-01T00:00:00"], cwd=repo, check=True, env=env,
                   capture_output=True)
    assert not list(tmp_path.rglob("PWNED")), "feast apply ran code from the index's manifest"
    script = ("import json, sys; from feast import FeatureStore; r = FeatureStore('.').get_online_features("
              "features=['item_embeddings:indices', 'item_embeddings:values'], entity_rows=[{'item_id': i} for i "
              "in json.loads(sys.argv[1])]).to_dict(); print(json.dumps(r))")
    python = os.path.join(os.path.dirname(FEAST_BIN), "python")
    out = subprocess.run([python, "-c", script, json.dumps(HOSTILE_IDS)], cwd=repo, check=True, env=env,
                         capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["item_id"] == HOSTILE_IDS
    assert_same_vectors([dict(zip(i, v)) for i, v in zip(got["indices"], got["values"])], f)


def test_feast_next_hint_runs_in_the_repository_whatever_its_name(index, tmp_path):
    repo = tmp_path / "re po;touch PWNED;'$(touch PWNED)'"
    summary = run_export(index, "feast", repo)
    fake = tmp_path / "bin" / "feast"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$PWD" >> "$FEAST_LOG"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "FEAST_LOG": str(tmp_path / "log")}
    subprocess.run(["sh", "-c", summary["next"]], cwd=tmp_path, env=env, capture_output=True)
    assert not list(tmp_path.rglob("PWNED"))
    assert (tmp_path / "log").read_text().splitlines() == [str(repo)] * 2


def test_pgvector_load_command_quotes_the_file_name(index, tmp_path):
    out = tmp_path / "it's; rm -rf x $(y).tsv"
    command = shlex.split(run_export(index, "pgvector", out)["next"])
    assert command[:2] == ["psql", "-v"] and command[-2:] == ["<", str(out)]
    ddl = command[command.index("-f") + 1]
    assert "COPY items FROM STDIN" in command and ddl == str(tmp_path / "it's; rm -rf x $(y).sql")
    assert f"embedding sparsevec({N_DIMS}))" in open(ddl).read()


# ---- --overwrite replaces only what sparseidx wrote (item 1) --------------------------------------------------

def _other_export(target):
    return {"parquet": "milvus", "milvus": "parquet", "qdrant": "vespa", "vespa": "elasticsearch",
            "elasticsearch": "qdrant", "pgvector": "qdrant", "feast": None}[target]


def _foreign_outputs(index, target, tmp_path):
    """Paths holding things an export of ``target`` must never replace."""
    if target == "feast":
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "feature_store.yaml").write_text("project: mine\n")
        (mine / "features.py").write_text('"""My features."""\n')
        theirs = tmp_path / "theirs"
        run_export(index, "feast", theirs)
        (theirs / "data" / "notes.txt").write_text("mine")
        return [mine, theirs]
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    other = tmp_path / "other"
    run_export(index, _other_export(target), other)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    table = tmp_path / "table.tsv"
    table.write_text("name\tage\nx\t1\n")
    return [notes, other, plain, table]


def _snapshot(path):
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in path.rglob("*")}
    return path.read_bytes()


@pytest.mark.parametrize("target", TARGETS)
def test_overwrite_refuses_outputs_sparseidx_did_not_write(index, target, tmp_path):
    for path in _foreign_outputs(index, target, tmp_path):
        before = _snapshot(path)
        with pytest.raises(OutputError, match="refusing to overwrite") as err:
            run_export(index, target, path, overwrite=True)
        assert "\n" not in str(err.value)
        assert _snapshot(path) == before
    if target == "feast":
        assert "notes.txt" in str(err.value)


@pytest.mark.parametrize("target", TARGETS)
def test_overwrite_replaces_a_previous_export_of_the_same_target(index, target, tmp_path):
    out = out_path(tmp_path, target)
    run_export(index, target, out)
    if target == "feast":  # what feast apply / materialize leave in the repository
        for name in ("data/registry.db", "data/online_store.db", "__pycache__/features.cpython-311.pyc"):
            (out / name).parent.mkdir(exist_ok=True)
            (out / name).write_bytes(b"state")
    run_export(index, target, out, overwrite=True)
    if target not in ("feast", "parquet", "milvus"):
        out.write_text("")  # an empty file holds nothing to lose
        run_export(index, target, out, overwrite=True)
        assert out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- a failed export leaves nothing new (item 4) --------------------------------------------------------------

def test_every_output_is_checked_before_any_work(index, tmp_path):
    (tmp_path / "items.users.parquet").write_text("my notes\n")
    with pytest.raises(OutputError, match="items.users.parquet already exists"):
        export(index, "parquet", str(tmp_path / "items.parquet"), users=str(tmp_path / "missing.txt"))
    with pytest.raises(OutputError, match="items.users.parquet: refusing to overwrite"):
        export(index, "parquet", str(tmp_path / "items.parquet"), users=str(tmp_path / "missing.txt"),
               overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.users.parquet"]


def test_bad_histories_leave_no_item_file(index, tmp_path):
    (tmp_path / "bad.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        export(index, "parquet", str(tmp_path / "items.parquet"), users=str(tmp_path / "bad.txt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_a_failing_user_export_keeps_both_previous_files(index, tmp_path, monkeypatch):
    write_lines(tmp_path / "h.txt", random_histories(1, 5, 40, 4), item_ids=np.arange(40) * 10)
    items, users = tmp_path / "items.parquet", tmp_path / "items.users.parquet"
    export(index, "parquet", str(items), users=str(tmp_path / "h.txt"))
    before = items.read_bytes(), users.read_bytes()

    def broken(*args):
        raise DataError("the disk caught fire")
        yield
    monkeypatch.setattr(parquet_export, "user_batches", broken)
    other = Index.build(random_factors(22, 40, N_DIMS, 0.2))  # whose item file would differ
    with pytest.raises(DataError, match="caught fire"):
        export(other, "parquet", str(items), users=str(tmp_path / "h.txt"), overwrite=True)
    assert (items.read_bytes(), users.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.txt", "items.parquet", "items.users.parquet"]
