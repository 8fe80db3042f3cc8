"""Property tests: hostile manifests, index files and input files give an answer or a one-line error."""

import json
import os
import shutil

import numpy as np
import pyarrow as pa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers import random_factors, random_histories

from sparseidx import Index
from sparseidx.data import load_interactions
from sparseidx.errors import DataError, IndexFormatError
from sparseidx.index import format as fmt
from sparseidx_cli.main import cli

FUZZ = settings(max_examples=int(os.environ.get("SPARSEIDX_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
hostile_names = st.sampled_from(["../outside", "/etc/passwd", "/dev/zero", "", ".", "..", "manifest.json",
                                 "postings.arrow/", "forward.arrow", "vectors.faiss", "x\x00y", "sub/items.arrow"])
top_keys = st.sampled_from(["format", "format_version", "backend", "n_items", "n_dims", "files", "model", "params",
                            "forward_index", "build_id", "faiss_index", "created_by"])
file_keys = st.sampled_from(["bytes", "sha256"])
mutation = st.one_of(
    st.tuples(st.just("set"), top_keys, json_values),
    st.tuples(st.just("delete"), top_keys, st.none()),
    st.tuples(st.just("file-field"), st.tuples(st.sampled_from(["postings.arrow", "items.arrow"]), file_keys),
              json_values),
    st.tuples(st.just("add-file"), hostile_names, json_values),
    st.tuples(st.just("rename-file"), hostile_names, st.none()),
)


def _apply(manifest: dict, change) -> None:
    action, key, value = change
    if action == "set":
        manifest[key] = value
    elif action == "delete":
        manifest.pop(key, None)
    elif action == "file-field" and isinstance(manifest.get("files"), dict) and key[0] in manifest["files"]:
        manifest["files"][key[0]][key[1]] = value
    elif action == "add-file" and isinstance(manifest.get("files"), dict):
        manifest["files"][key] = value
    elif action == "rename-file" and isinstance(manifest.get("files"), dict) and "postings.arrow" in manifest["files"]:
        manifest["files"][key] = manifest["files"].pop("postings.arrow")


def _fresh(tmp_path_factory, name="idx"):
    base = tmp_path_factory.getbasetemp() / "fuzz-original"
    if not base.exists():
        Index.build(random_factors(21, 50, 10, 0.2), postings_per_dim=4).write(base)
    target = tmp_path_factory.mktemp("case") / name
    shutil.copytree(base, target)
    return target


Q = random_histories(3, 5, 50, 4)


@FUZZ
@given(changes=st.lists(mutation, min_size=1, max_size=4))
def test_hostile_manifests_give_an_index_or_an_index_format_error(tmp_path_factory, changes):
    path = _fresh(tmp_path_factory)
    manifest = json.loads((path / "manifest.json").read_text())
    for change in changes:
        _apply(manifest, change)
    (path / "manifest.json").write_text(json.dumps(manifest))
    try:
        index = Index.open(path)
    except IndexFormatError as exc:
        assert "\n" not in str(exc)
        assert Index.verify(path), "verify must report what open refused"
    else:
        scores, ids = index.search(Q, 5)
        assert ids.shape == (5, 5) and np.isfinite(scores[ids >= 0]).all()
    res = CliRunner().invoke(cli, ["verify", str(path)])
    assert res.exit_code in (0, 1) and "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


@FUZZ
@given(name=st.sampled_from(["postings.arrow", "encoder.arrow", "items.arrow", "forward.arrow"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8))
def test_crafted_index_files_with_matching_checksums_never_reach_the_engine_unchecked(tmp_path_factory, name, flips):
    """Byte flips with the manifest's sizes and checksums updated (as a crafted index would be)."""
    path = _fresh(tmp_path_factory)
    data = bytearray((path / name).read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    (path / name).write_bytes(bytes(data))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name]["sha256"] = fmt.sha256_file(path / name)
    (path / "manifest.json").write_text(json.dumps(manifest))
    try:
        index = Index.open(path)
    except IndexFormatError as exc:
        assert "\n" not in str(exc)
        return
    scores, ids = index.search(Q, 5)
    assert ids.shape == (5, 5) and ((ids >= -1) & (ids < index.n_items)).all()
    assert np.isfinite(scores[ids >= 0]).all()


token = st.one_of(st.integers(-2**64, 2**64).map(str), st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                                               max_size=6),
                  st.sampled_from(["nan", "NaN", "inf", "-0", "1e3", "0x10", "٣", "", "\\N", "1.5"]))


@FUZZ
@given(lines=st.lists(st.lists(token, min_size=1, max_size=5), min_size=0, max_size=6),
       ext=st.sampled_from([".txt", ".csv", ".tsv"]))
def test_hostile_input_files_give_interactions_or_a_data_error(tmp_path_factory, lines, ext):
    path = tmp_path_factory.mktemp("input") / f"data{ext}"
    sep = {".txt": " ", ".csv": ",", ".tsv": "\t"}[ext]
    header = "" if ext == ".txt" else sep.join(["user", "item"]) + "\n"
    path.write_text(header + "".join(sep.join(t.replace("\n", " ") for t in line) + "\n" for line in lines))
    try:
        inter = load_interactions(path)
    except DataError as exc:
        assert "\n" not in str(exc).strip() and len(str(exc)) < 600
        return
    assert inter.X.shape == (len(inter.user_ids), len(inter.item_ids)) and inter.nnz > 0
    assert np.isfinite(inter.X.data).all()
    assert pa.array(inter.item_ids).null_count == 0
