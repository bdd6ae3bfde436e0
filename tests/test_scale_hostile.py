"""Partial files are untrusted data (issue 19): forged shard counts and indices, corrupt states, an eval
set edited in place, a FIFO or an oversized file, and a partial naming a contract whose runtime stage
would import code — each is a usage error naming the file (exit 2) or a skipped stage, never an
internal error, a hang, gigabytes of memory, or user code run by `promote merge`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile_files import without_blocking

from promote.cli import cli
from promote.errors import UsageError
from promote.run import run_merge, write_shard
from promote.scale.partial import MAGIC, MAX_SHARDS, Partial

SIDE_EFFECT = '''
import os
from pathlib import Path

if os.environ.get("PROMOTE_TEST_IMPORTED"):
    Path(os.environ["PROMOTE_TEST_IMPORTED"]).write_text("imported")
'''


@pytest.fixture
def shards(mini, tmp_path):
    """Two partials of the mini contract, which also declares a runtime stage (kernels are built there)."""
    mini.write("model.py", (mini.root / "model.py").read_text() + SIDE_EFFECT)
    contract = mini.contract(extra={"runtime": {"warmup": 0, "repeats": 1, "clauses": [
        {"id": "errors", "metric": "error_rate", "max": 0}]}})
    outs = [tmp_path / f"s{i}.partial" for i in range(2)]
    for i, out in enumerate(outs):
        assert write_shard(str(contract), i, 2, out) == 0
    return contract, outs


def _doc(path: Path) -> dict:
    return json.loads(path.read_bytes()[len(MAGIC):])


def _write(path: Path, doc: dict) -> Path:
    path.write_bytes(MAGIC + json.dumps(doc).encode())
    return path


def _merge(*paths: Path, contract: Path | None = None):
    args = ["merge", *map(str, paths), *([f"--contract={contract}"] if contract else []), "--format", "json"]
    return CliRunner().invoke(cli, args)


def test_forged_shard_counts_and_indices_are_refused_before_anything_else(shards, tmp_path):
    _, outs = shards
    cases = [({"count": 10**9}, "N <= 100000"), ({"count": 1e9}, "all integers"), ({"index": "1"}, "all integers"),
             ({"index": 1.0}, "all integers"), ({"index": -1}, "0 <= I < N"), ({"index": 2}, "0 <= I < N"),
             ({"count": True}, "all integers"), ({"count": 0}, "0 <= I < N"), ({"batch_size": 0}, "batch size")]
    for change, needle in cases:
        doc = _doc(outs[1])
        doc["shard"].update(change)
        forged = _write(tmp_path / "forged", doc)
        with pytest.raises(UsageError, match=needle) as info:
            Partial.read(forged)
        assert str(forged) in info.value.format_message(), change
        res = _merge(outs[0], forged)
        assert res.exit_code == 2 and str(forged) in res.output, res.output
        assert "malformed promote partial" in res.output
    assert MAX_SHARDS == 100_000


def _numerics(d: dict) -> dict:
    return d["states"]["numerics"]


@pytest.mark.parametrize("mutate", [
    lambda d: _numerics(d).pop("summaries"),
    lambda d: _numerics(d).update(summaries=_numerics(d)["summaries"][:-8] + "!!!!!!!!"),
    lambda d: _numerics(d).update(summaries=base64.b64encode(b"PROMOTE-STATE\n{").decode()),
    lambda d: _numerics(d).update(summaries=base64.b64encode(base64.b64decode(_numerics(d)["summaries"])
                                  .replace(b'"nd":"<f8"', b'"nd":"|O"', 1).replace(b'"nd":"<i8"', b'"nd":"|O"', 1))
                                  .decode()),
    lambda d: _numerics(d).update(summaries=base64.b64encode(base64.b64decode(_numerics(d)["summaries"]).replace(
        b'"shape":[', b'"shape":[7,', 1)).decode()),
    lambda d: d.update(sample_ids="s00"),
    lambda d: d.update(kernel_seconds={"pass": "1"}),
    lambda d: d.update(stages=["numerics", "numerics"]),
    lambda d: d.update(extras=[1]),
    lambda d: d.update(loaded={"numerics": [{"summaries": 1}]}),
    lambda d: _numerics(d).update(summaries=_numerics(d)["floor/odd_batch"]) if "floor/odd_batch" in _numerics(d)
    else _numerics(d).update(summaries=base64.b64encode(b"PROMOTE-STATE\n{}").decode()),
], ids=["missing", "base64", "json", "dtype", "shape", "ids", "seconds", "stages", "extras", "loaded", "swapped"])
def test_a_corrupt_state_or_field_is_exit_2_naming_the_file(shards, tmp_path, mutate):
    _, outs = shards
    doc = _doc(outs[1])
    mutate(doc)
    forged = _write(tmp_path / "forged.partial", doc)
    res = _merge(outs[0], forged)
    assert res.exit_code == 2, res.output
    assert str(forged) in res.output and "internal error" not in res.output and "Traceback" not in res.output


def test_merge_without_contract_builds_no_kernel_and_imports_no_code(shards, tmp_path):
    """A real process each time (an in-process model module would already be imported by the shards)."""
    contract, outs = shards
    marker = tmp_path / "imported"
    env = {**os.environ, "PROMOTE_TEST_IMPORTED": str(marker)}

    def merge(*extra: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "promote.cli", "merge", *map(str, outs), *extra, "--format",
                               "json"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        return next(s for s in json.loads(proc.stdout)["stages"] if s["name"] == "runtime")

    runtime = merge()
    assert not marker.exists()  # the model file the contract names was never imported
    assert runtime["status"] == "skipped" and "--contract" in runtime["notes"][0]
    runtime = merge(f"--contract={contract}")  # named on the command line: the user trusts it
    assert runtime["status"] == "pass" and marker.exists()


def test_tokens_edited_in_place_or_other_weights_are_refused(mini, tmp_path):
    contract = mini.contract()
    outs = [tmp_path / f"s{i}" for i in range(2)]
    for i, out in enumerate(outs):
        assert write_shard(str(contract), i, 2, out) == 0
    data = mini.root / "eval.jsonl"
    original = data.read_text()
    lines = original.splitlines()
    row = json.loads(lines[3])
    row["input_ids"] = [(t + 1) % 16 for t in row["input_ids"]]  # same id, same length, other tokens
    data.write_text("\n".join([*lines[:3], json.dumps(row), *lines[4:]]) + "\n")
    with pytest.raises(UsageError, match="its ids, tokens or tags differ"):
        run_merge(outs)
    data.write_text(original)
    model = mini.root / "model.py"
    model.write_text(model.read_text() + "\n# edited\n")
    with pytest.raises(UsageError, match=r"other kernel or input files .*reference\.model_file"):
        run_merge(outs)


def test_a_fifo_or_an_oversized_partial_is_refused_without_hanging(shards, tmp_path, monkeypatch):
    _, outs = shards
    fifo = tmp_path / "fifo.partial"
    os.mkfifo(fifo)
    res = without_blocking(lambda: _merge(outs[0], fifo), fifo)
    assert res.exit_code == 2 and "FIFO" in res.output and str(fifo) in res.output
    res = _merge(outs[0], Path("/dev/zero"))
    assert res.exit_code == 2 and "character device" in res.output, res.output
    monkeypatch.setattr("promote.scale.partial.MAX_BYTES", 1000)
    res = _merge(*outs)
    assert res.exit_code == 2 and "over the 1000 bytes limit" in res.output, res.output
