"""`data.task: tensor` end to end: the shipped example, a perturbed candidate, bad models, bad contracts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from promote.cli import cli
from promote.resources import load_schema

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_mlp"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_example_passes_end_to_end():
    result = invoke("check", str(EXAMPLE / "contract.yaml"), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    clauses = report["stages"][0]["clauses"]
    assert {c["slice"] for c in clauses} == {"output=scores", "output=embedding", "output=hidden_states[0]",
                                             "output=hidden_states[1]"}
    assert all(c["status"] == "pass" for c in clauses)
    details = report["stages"][0]["details"]
    assert details["outputs"]["scores"]["dtypes"] == {"reference": ["float32"], "candidate": ["bfloat16"]}
    assert report["data"]["samples"] == 64
    assert invoke("validate", str(EXAMPLE / "contract.yaml")).exit_code == 0


def _copy_example(tmp_path, *, weights: str = "weights.safetensors", **candidate) -> str:
    doc = yaml.safe_load((EXAMPLE / "contract.yaml").read_text())
    for role in ("reference", "candidate"):
        doc[role]["model"] = f"{EXAMPLE / 'model.py'}:build"
        doc[role]["weights"] = str(EXAMPLE / "weights.safetensors")
    doc["candidate"]["weights"] = weights if weights != "weights.safetensors" else doc["candidate"]["weights"]
    doc["candidate"].update(candidate)
    doc["data"]["path"] = str(EXAMPLE / "eval.jsonl")
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_perturbed_candidate_fails_the_gate(tmp_path):
    state = load_file(str(EXAMPLE / "weights.safetensors"))
    rng = np.random.default_rng(0)
    state["embed.weight"] = state["embed.weight"] * (1 + 0.05 * rng.normal(size=state["embed.weight"].shape)
                                                     ).astype(np.float32)
    save_file(state, str(tmp_path / "perturbed.safetensors"))
    result = invoke("check", _copy_example(tmp_path, weights="perturbed.safetensors"), "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    failed = {(c["id"], c["slice"]) for c in report["stages"][0]["clauses"] if c["status"] == "fail"}
    assert ("embedding-cosine", "output=embedding") in failed
    assert ("scores-abs-p99", "output=scores") not in failed  # the scores head was left alone


def test_weight_precision_casts_float_inputs(tmp_path):
    result = invoke("check", _copy_example(tmp_path, precision="bf16-weights"), "--format", "json")
    assert result.exit_code in (0, 1), result.output  # judged (bf16 weights and inputs), not a crash
    assert json.loads(result.stdout)["stages"][0]["details"]["outputs"]["scores"]["dtypes"]["candidate"] == [
        "bfloat16"]


BAD_MODELS = '''
import torch


class Flat(torch.nn.Module):
    def forward(self, x):
        return {"total": x.sum()}  # reduces over the batch: not one row per sample


class Text(torch.nn.Module):
    def forward(self, x):
        return {"label": "cat", "scores": x}


class Named(torch.nn.Module):
    def forward(self, pixels):
        return pixels


class Fine(torch.nn.Module):
    def forward(self, x):
        return {"y": x * 2}


def flat():
    return Flat()


def text():
    return Text()


def named():
    return Named()


def fine():
    return Fine()
'''


def _tensor_project(tmp_path, candidate: str, clauses=None, data=None) -> str:
    (tmp_path / "models.py").write_text(BAD_MODELS)
    lines = [json.dumps({"id": f"s{i}", "inputs": {"x": [i, i + 0.5, -1.0]}}) for i in range(6)]
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + "\n")
    doc = {
        "version": 1, "name": "t",
        "reference": {"kind": "torch", "model": "models.py:fine", "batch_size": 4},
        "candidate": {"kind": "torch", "model": f"models.py:{candidate}", "batch_size": 4},
        "data": {"path": "eval.jsonl", "task": "tensor", **(data or {})},
        "numerical": {"clauses": clauses or [{"id": "abs", "metric": "abs", "stat": "max", "max": 1e-6}]},
    }
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("candidate,needle", [
    ("flat", "expects every output to have a leading batch dimension of 4 (samples in this batch), but output "
             "`total` has shape []"),
    ("text", "output `label` is a str; the task `tensor` compares tensors"),
    ("named", "forward(pixels) cannot take the eval set's inputs ['x']"),
])
def test_a_model_whose_output_is_not_what_the_task_expects_exits_2(tmp_path, candidate, needle):
    result = CliRunner().invoke(cli, ["check", _tensor_project(tmp_path, candidate)])
    assert result.exit_code == 2, result.output
    assert "candidate (torch, fp32)" in result.stderr and needle in result.stderr
    assert "Traceback" not in result.output


def test_identical_tensor_models_pass(tmp_path):
    result = invoke("check", _tensor_project(tmp_path, "fine"))
    assert result.exit_code == 0, result.output
    assert "`y`: max(abs) = 0" in result.stdout


def test_lm_task_rejects_a_tensor_model_with_a_clear_message(mini):
    mini.write("dict_model.py", """\
        import torch

        def build():
            class D(torch.nn.Module):
                def forward(self, ids):
                    return {"hidden": torch.zeros(*ids.shape, 4)}
            return D()
        """)
    path = mini.contract(extra={"candidate": {"kind": "torch", "model": "dict_model.py:build", "batch_size": 5}})
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 2
    assert "the task `causal-lm` needs a logits tensor" in result.stderr


@pytest.mark.parametrize("task,clause,key,needle", [
    ("tensor", {"id": "k", "metric": "kl", "stat": "mean", "max": 1}, "metric",
     "metric `kl` is a causal-LM metric but `data.task` is `tensor`"),
    ("causal-lm", {"id": "a", "metric": "abs", "stat": "max", "max": 1}, "metric",
     "metric `abs` compares generic tensors and needs `data.task: tensor`"),
    ("causal-lm", {"id": "f", "metric": "nonfinite", "stat": "max", "max": 0, "output": "x"}, "output",
     "`output` applies to `data.task: tensor` only"),
    ("tensor", {"id": "r", "metric": "abs", "stat": "max", "max": 1, "rel_floor": 0.1}, "rel_floor",
     "`rel_floor` applies to metric `rel` only"),
])
def test_metrics_must_fit_the_task_with_a_located_message(tmp_path, task, clause, key, needle):
    path = _tensor_project(tmp_path, "fine", clauses=[clause])
    doc = yaml.safe_load(Path(path).read_text())
    doc["data"]["task"] = task
    (tmp_path / "contract.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(cli, ["validate", "--no-data", path])
    assert result.exit_code == 2
    lines = Path(path).read_text().splitlines()
    start = lines.index("numerical:")
    line = next(i for i in range(start, len(lines)) if lines[i].lstrip(" -").startswith(f"{key}:")) + 1
    assert f"contract.yaml:{line}:" in result.stderr  # file:line:col of the offending key or value
    assert needle in result.stderr


def test_inputs_file_from_the_contract(tmp_path):
    save_file({f"s{i}/x": np.array([i, 1.0, 2.0], np.float32) for i in range(6)}, str(tmp_path / "in.safetensors"))
    path = _tensor_project(tmp_path, "fine", data={"inputs_file": "in.safetensors"})
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps({"id": f"s{i}"}) for i in range(6)) + "\n")
    result = invoke("check", path)
    assert result.exit_code == 0, result.output
    missing = _tensor_project(tmp_path, "fine", data={"inputs_file": "nope.safetensors"})
    result = CliRunner().invoke(cli, ["validate", missing])
    assert result.exit_code == 2 and "inputs file `nope.safetensors` not found" in result.stderr


def test_vacuous_tensor_outputs_block(tmp_path):
    (tmp_path / "zeros.py").write_text(textwrap.dedent('''
        import torch

        def build():
            class Z(torch.nn.Module):
                def forward(self, x):
                    return {"y": torch.zeros_like(x)}
            return Z()
        '''))
    path = _tensor_project(tmp_path, "fine")
    doc = yaml.safe_load(Path(path).read_text())
    doc["reference"]["model"] = doc["candidate"]["model"] = "zeros.py:build"
    (tmp_path / "contract.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = invoke("check", path)
    assert result.exit_code == 1
    assert "VACUOUS" in result.stdout and "both kernels output all zeros" in result.stdout


def test_tie_margin_is_a_warning_for_tensor_tasks(tmp_path):
    path = _tensor_project(tmp_path, "fine")
    doc = yaml.safe_load(Path(path).read_text())
    doc["numerical"]["tie_margin"] = 0.01
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 0
    assert "warning: `tie_margin` is about causal-LM argmax flips" in result.stderr


def test_markdown_names_the_output_of_each_result():
    result = invoke("check", str(EXAMPLE / "contract.yaml"), "--format", "markdown")
    assert "| `finite` | output=hidden\\_states\\[1\\] | sum(nonfinite) | 0 | ≤ 0 | 0 |" in result.stdout


def test_shards_of_another_inputs_file_are_refused_at_merge(tmp_path):
    """The eval set names inputs_file tensors by key, dtype and shape only: the file's bytes are digested
    with the kernel files, so new values under the same keys cannot merge with shards of the old ones."""
    from promote.errors import UsageError
    from promote.run import run_merge, write_shard

    def inputs(offset: float) -> None:
        save_file({f"s{i}/x": np.array([i + offset, 1.0, 2.0], np.float32) for i in range(6)},
                  str(tmp_path / "in.safetensors"))

    inputs(0.0)
    path = _tensor_project(tmp_path, "fine", data={"inputs_file": "in.safetensors"})
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps({"id": f"s{i}"}) for i in range(6)) + "\n")
    outs = [tmp_path / f"part{i}" for i in range(2)]
    for i, out in enumerate(outs):
        assert write_shard(path, i, 2, out) == 0
    run_merge(outs, contract=path)  # the same file: merges
    inputs(0.5)
    with pytest.raises(UsageError, match=r"other kernel or input files .*data\.inputs_file"):
        run_merge(outs, contract=path)
