"""`data.task: tensor` eval sets: inline `inputs`, an inputs file, batching by input signature."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from promote.data import read_jsonl, tensor_batches
from promote.errors import UsageError


def write(tmp_path, lines, name="eval.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return path


def test_inline_inputs_get_json_dtypes_and_batches_group_by_shape(tmp_path):
    path = write(tmp_path, [
        {"id": "a", "inputs": {"x": [1.0, 2.0], "k": [1, 2, 3]}},
        {"id": "b", "inputs": {"x": [[1.0, 2.0]], "k": [1, 2, 3]}},  # x has another shape
        {"id": "c", "inputs": {"x": [3, 4.5], "k": [4, 5, 6]}},
        {"id": "d", "inputs": {"x": [5.0, 6.0], "k": [7, 8, 9], "m": [True, False]}},  # another input set
        {"id": "e", "inputs": {"x": [7.0, 8.0], "k": [0, 0, 0]}, "tags": {"g": "1"}},
    ])
    evalset = read_jsonl(path, task="tensor")
    a = evalset.samples[0]
    assert a.inputs["x"].dtype == np.float32 and a.inputs["k"].dtype == np.int64 and a.input_ids == ()
    assert evalset.samples[3].inputs["m"].dtype == np.bool_
    assert evalset.positions == 5  # one scored unit per sample
    batches = list(tensor_batches(evalset, 2))
    assert [b.ids for b in batches] == [["a", "c"], ["e"], ["b"], ["d"]]
    assert batches[0].inputs["x"].shape == (2, 2) and batches[0].inputs["k"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert batches[2].inputs["x"].shape == (1, 1, 2)


@pytest.mark.parametrize("line,needle", [
    ({"id": "a", "inputs": {"x": [[1, 2], [3]]}}, "input `x` is a ragged list"),
    ({"id": "a", "inputs": {"x": ["a", "b"]}}, "input `x` must hold numbers"),
    ({"id": "a", "inputs": [1, 2]}, "`inputs` must be an object"),
    ({"id": "a", "inputs": {"a/b": [1]}}, "must be non-empty and contain no `/`"),
    ({"id": "a"}, "sample `a` has no inputs"),
    ({"id": "a", "input_ids": [1, 2]}, "unknown key(s) input_ids"),
])
def test_bad_tensor_lines_name_file_and_line(tmp_path, line, needle):
    path = write(tmp_path, [{"id": "ok", "inputs": {"x": [1.0]}}, line])
    with pytest.raises(UsageError, match="eval.jsonl:2") as info:
        read_jsonl(path, task="tensor")
    assert needle in str(info.value)


def test_inputs_key_needs_task_tensor(tmp_path):
    path = write(tmp_path, [{"id": "a", "input_ids": [1, 2], "inputs": {"x": [1.0]}}])
    with pytest.raises(UsageError, match=r"`inputs` needs `data.task: tensor`"):
        read_jsonl(path)


def test_inputs_file_is_joined_by_id_and_read_lazily(tmp_path):
    save_file({"a/img": np.arange(6, dtype=np.float16).reshape(2, 3), "b/img": np.ones((2, 3), np.float16),
               "c/img": np.zeros((4, 3), np.float16)}, str(tmp_path / "inputs.safetensors"))
    path = write(tmp_path, [{"id": "a", "inputs": {"scale": 2.0}}, {"id": "b", "inputs": {"scale": 3.0}},
                            {"id": "c", "inputs": {"scale": 1.0}}])
    evalset = read_jsonl(path, task="tensor", inputs_file=tmp_path / "inputs.safetensors")
    batches = list(tensor_batches(evalset, 8))
    assert [b.ids for b in batches] == [["a", "b"], ["c"]]  # c's image has another shape
    assert batches[0].inputs["img"].dtype == np.float16  # the file's dtype is kept
    assert batches[0].inputs["img"][0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert batches[0].inputs["scale"].tolist() == [2.0, 3.0]


def test_inputs_file_mismatches_are_errors(tmp_path):
    save_file({"a/x": np.ones(2, np.float32), "zz/x": np.ones(2, np.float32)}, str(tmp_path / "in.safetensors"))
    path = write(tmp_path, [{"id": "a"}])
    with pytest.raises(UsageError, match=r"in.safetensors: tensors for sample id\(s\) not in .*eval.jsonl: zz"):
        read_jsonl(path, task="tensor", inputs_file=tmp_path / "in.safetensors",
                   inputs_file_display="in.safetensors")
    save_file({"a/x": np.ones(2, np.float32)}, str(tmp_path / "in.safetensors"))
    both = write(tmp_path, [{"id": "a", "inputs": {"x": [1.0, 2.0]}}], name="both.jsonl")
    with pytest.raises(UsageError, match="both.jsonl:1: sample `a`: input\\(s\\) x given both inline and in"):
        read_jsonl(both, task="tensor", inputs_file=tmp_path / "in.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UsageError, match="not a readable safetensors file"):
        read_jsonl(path, task="tensor", inputs_file=tmp_path / "junk.safetensors")
    save_file({"x": np.ones(2, np.float32)}, str(tmp_path / "flat.safetensors"))
    with pytest.raises(UsageError, match="tensor `x` is not named `<sample id>/<input name>`"):
        read_jsonl(path, task="tensor", inputs_file=tmp_path / "flat.safetensors")


def test_bf16_inputs_file_is_refused_with_advice(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    save_torch({"a/x": torch.ones(2, dtype=torch.bfloat16)}, str(tmp_path / "bf.safetensors"))
    path = write(tmp_path, [{"id": "a"}])
    with pytest.raises(UsageError, match="tensor `a/x` has dtype BF16, which numpy cannot hold"):
        read_jsonl(path, task="tensor", inputs_file=tmp_path / "bf.safetensors")
