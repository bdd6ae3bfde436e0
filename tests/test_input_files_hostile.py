"""Input files that are not regular files, or too big to read whole (issue 19, items 17 and 18): a FIFO
or a device as `data.path` or observability `source.path` is refused by name instead of blocking or
filling memory, and `data.limit: N` reads only the first N samples' lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hostile_files import without_blocking

from promote.cli import cli
from promote.data.jsonl import read_jsonl
from promote.errors import UsageError


def test_a_fifo_data_path_is_named_as_a_fifo_not_as_missing(mini, tmp_path):
    fifo = tmp_path / "eval.fifo"
    os.mkfifo(fifo)
    contract = mini.contract()
    doc = yaml.safe_load(contract.read_text())
    doc["data"]["path"] = str(fifo)
    contract.write_text(yaml.safe_dump(doc))
    res = without_blocking(lambda: CliRunner().invoke(cli, ["validate", str(contract)]), fifo)
    assert res.exit_code == 2 and "is a FIFO (named pipe), not a regular file" in res.output, res.output
    assert "not found" not in res.output
    error = without_blocking(lambda: read_jsonl(fifo), fifo)
    assert isinstance(error, UsageError) and "a FIFO" in error.format_message()
    with pytest.raises(UsageError, match="character device"):
        read_jsonl(Path("/dev/zero"))


def test_data_limit_reads_only_the_lines_it_needs(tmp_path):
    path = tmp_path / "eval.jsonl"
    rows = [json.dumps({"id": f"s{i}", "input_ids": [1, 2, 3]}) for i in range(3)]
    # After the first three samples: a line that is not JSON, then bytes that are not UTF-8. Reading the
    # whole file first (as before) failed on them even with `limit: 3`.
    path.write_bytes(("\n".join(rows) + "\n{not json\n").encode() + b"\xff\xfe" * 1000 + b"\n")
    assert [s.id for s in read_jsonl(path, limit=3).samples] == ["s0", "s1", "s2"]
    with pytest.raises(UsageError, match=r"eval.jsonl:4: malformed JSON"):
        read_jsonl(path)


def test_a_fifo_or_device_as_observability_snapshot_is_refused(tmp_path):
    fifo = tmp_path / "m.prom"
    os.mkfifo(fifo)
    for source in (str(fifo), "/dev/zero"):
        doc = {"version": 1, "name": "obs", "observability": {"source": {"kind": "file", "path": source},
                                                               "clauses": [{"id": "up", "metric": "up", "max": 1}]}}
        contract = tmp_path / "c.yaml"
        contract.write_text(yaml.safe_dump(doc, sort_keys=False))
        for command in ("check", "validate"):
            res = without_blocking(lambda c=contract, cmd=command: CliRunner().invoke(cli, [cmd, str(c)]), fifo)
            assert res.exit_code == 2, res.output
            assert ("FIFO" if source == str(fifo) else "character device") in res.output, res.output


def test_a_fifo_or_device_as_contract_is_refused(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        res = without_blocking(lambda p=path: CliRunner().invoke(cli, ["validate", p]), fifo)
        assert res.exit_code == 2 and ("FIFO" in res.output or "character device" in res.output), res.output
