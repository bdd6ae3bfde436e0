"""Eval-set reading: each malformed input names the file and line."""

from __future__ import annotations

import numpy as np
import pytest

from promote.data import batches, read_jsonl
from promote.errors import UsageError


def write(tmp_path, text):
    path = tmp_path / "eval.jsonl"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ('{"id": "a", "input_ids": [1, 2]}\n{"id": "b", "input_ids": [1,\n', "eval.jsonl:2: malformed JSON"),
    ('{"id": "a", "input_ids": [1, 2]}\n\n{"id": "a", "input_ids": [3]}\n',
     "eval.jsonl:3: duplicate id `a` (first at line 1)"),
    ('[1, 2]\n', "eval.jsonl:1: expected a JSON object"),
    ('{"id": 3, "input_ids": [1]}\n', "eval.jsonl:1: `id` must be a non-empty string"),
    ('{"id": "a", "input_ids": [1, -2]}\n', "eval.jsonl:1: sample `a`: `input_ids` must hold non-negative"),
    ('{"id": "a", "input_ids": []}\n', "`input_ids` must be a non-empty list"),
    ('{"id": "a", "input_ids": [1], "tags": {"x": 1}}\n', "`tags` must map strings to strings"),
    ('{"id": "a", "input_ids": [1], "colour": "red"}\n', "unknown key(s) colour"),
    ('\n\n', "the eval set has no samples"),
])
def test_bad_lines_name_file_and_line(tmp_path, text, needle):
    with pytest.raises(UsageError) as info:
        read_jsonl(write(tmp_path, text), display_path="eval.jsonl")
    assert needle in info.value.format_message()
    assert info.value.exit_code == 2


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="data file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_limit_and_batches_pad_on_the_right(tmp_path):
    path = write(tmp_path, "".join(f'{{"id": "s{i}", "input_ids": {list(range(1, 2 + i))}}}\n' for i in range(5)))
    evalset = read_jsonl(path, limit=3)
    assert [s.id for s in evalset.samples] == ["s0", "s1", "s2"]
    assert evalset.positions == 0 + 1 + 2
    (batch,) = list(batches(evalset.samples, 8))
    assert batch.input_ids.tolist() == [[1, 0, 0], [1, 2, 0], [1, 2, 3]]
    assert batch.scored_mask().tolist() == [[False, False, False], [True, False, False], [True, True, False]]
    assert batch.input_ids.dtype == np.int64
