"""Issue 9, class 3: what `validate` accepts, `check` can evaluate. Non-finite numbers, crossed
ranges, NUL characters, sizes beyond the caps and token ids that cannot be ids are exit 2 at
`file:line:col` (or the sample and position), never an internal error, a crash or an OOM."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promote.cli import cli

BASE = """\
version: 1
name: edges
reference: {kind: torch, model: "model.py:build", batch_size: 5}
candidate: {kind: torch, model: "model.py:build", batch_size: 5}
data: {path: eval.jsonl}
"""
NUMERICAL = """\
numerical:
  tie_margin: @TIE@
  clauses:
    - {id: kl, metric: kl, stat: mean, max: @MAX@}
    - {id: agree, metric: argmax_agree, stat: mean, min: @MIN@}
"""
STATISTICAL = """\
slices:
  - {name: len, by: length, quantiles: @QUANTILES@}
statistical:
  alpha: @ALPHA@
  power: @POWER@
  resamples: @RESAMPLES@
  min_samples: 2
  clauses:
    - {id: kl-slices, metric: kl, stat: max_over_slices, max: @SMAX@}
    - {id: acc, metric: accuracy, max_drop: @DROP@}
"""
DEFAULTS = {"TIE": "1e-3", "MAX": "1e-3", "MIN": "0.5", "QUANTILES": "2", "ALPHA": "0.05", "POWER": "0.8",
            "RESAMPLES": "99", "SMAX": "1e-2", "DROP": "0.1"}


def contract_text(**values: str) -> str:
    text = BASE + NUMERICAL + STATISTICAL
    for key, value in {**DEFAULTS, **values}.items():
        text = text.replace(f"@{key}@", value)
    return text


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert "internal error" not in result.output + result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_the_edge_contract_itself_is_valid_and_checks(mini):
    path = mini.write("ok.yaml", contract_text())
    assert run("validate", str(path)).exit_code == 0
    assert run("check", str(path)).exit_code in (0, 1)


@pytest.mark.parametrize("spelling", [".nan", ".inf", "-.inf", ".NaN", "1e400", "-1e999"])
@pytest.mark.parametrize(("placeholder", "key"), [
    ("TIE", "tie_margin"), ("MAX", "max"), ("MIN", "min"), ("ALPHA", "alpha"), ("POWER", "power"),
    ("SMAX", "max"), ("DROP", "max_drop"),
])
def test_non_finite_numbers_are_rejected_at_their_line_for_every_key(mini, placeholder, key, spelling):
    text = contract_text(**{placeholder: spelling})
    path = mini.write("bad.yaml", text)
    for command in ("validate", "check"):
        result = run(command, str(path))
        assert result.exit_code == 2, result.output
        line = line_of(text, spelling)
        assert f"{path}:{line}:" in result.stderr
        assert f"`{key}` must be a finite number" in result.stderr


def with_implications(text: str, implications: str) -> str:
    return text.replace("  tie_margin:", f"  implications: {implications}\n  tie_margin:", 1)


def test_non_finite_numbers_in_lists_and_from_the_environment(mini, monkeypatch):
    monkeypatch.setenv("CLIP", "-.inf")
    implications = "\n    reward_range: [0, .inf]\n    clip: ${CLIP}"
    path = mini.write("bad.yaml", with_implications(contract_text(), implications))
    result = run("validate", str(path))
    assert result.exit_code == 2
    assert "`reward_range[1]` must be a finite number, got `.inf`" in result.stderr
    assert "`clip` must be a finite number, got the value from `${CLIP}`" in result.stderr
    assert "-.inf" not in result.stderr  # the environment's value is never quoted


def test_crossed_ranges_are_rejected(mini):
    text = with_implications(contract_text(MIN="0.5, max: 0.25"), "{reward_range: [1, -1]}")
    path = mini.write("crossed.yaml", text)
    result = run("validate", str(path))
    assert result.exit_code == 2
    assert f"{path}:{line_of(text, 'id: agree')}:" in result.stderr
    assert "`min` of clause `agree` (`0.5`) is above `max` (`0.25`): no value can pass" in result.stderr
    assert "`reward_range` must be [lowest, highest], got [`1`, `-1`]; swap the two values" in result.stderr
    assert run("check", str(path)).exit_code == 2


@pytest.mark.parametrize("where", ["data", "model", "weights"])
def test_a_nul_character_in_a_path_is_a_located_error_for_validate_and_check(mini, where):
    text = contract_text()
    if where == "data":
        text = text.replace("path: eval.jsonl", 'path: "eval\\0.jsonl"')
    elif where == "model":
        text = text.replace('model: "model.py:build", batch_size: 5}\ncandidate',
                            'model: "mo\\0del.py:build", batch_size: 5}\ncandidate')
    else:
        text = text.replace('batch_size: 5}\ncandidate', 'batch_size: 5, weights: "w\\0.safetensors"}\ncandidate')
    path = mini.write("nul.yaml", text)
    for command in ("validate", "check"):
        result = run(command, str(path))
        assert result.exit_code == 2
        assert "contains a NUL character" in result.stderr and f"{path}:" in result.stderr


@pytest.mark.parametrize(("old", "new", "message"), [
    ("quantiles: 2", "quantiles: 1000000000", "`quantiles` must be at most 1000, got integer 1000000000"),
    ("resamples: 99", "resamples: 100000000", "`resamples` must be at most 100000, got integer 100000000"),
    ("batch_size: 5}\ncandidate", "batch_size: 5, threads: 100000000000000000000}\ncandidate",
     "`threads` must be at most 1024, got integer 100000000000000000000"),
    ("resamples: 99", "resamples: 1e8", "`resamples` must be an integer, got number 100000000.0"),
])
def test_sizes_beyond_their_cap_are_rejected_before_anything_runs(mini, old, new, message):
    path = mini.write("big.yaml", contract_text().replace(old, new))
    result = run("check", str(path))
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.parametrize(("token", "shown"), [(2**63, "9223372036854775808"), (-1, "-1"), (1.5, "1.5"),
                                             (10**30, "1000000000000000000000000000000")])
def test_token_ids_that_cannot_be_ids_name_the_sample_and_position(mini, token, shown):
    (mini.root / "eval.jsonl").write_text(json.dumps({"id": "big", "input_ids": [1, 2, token, 3]}) + "\n")
    path = mini.write("c.yaml", contract_text())
    for command in ("validate", "check"):
        result = run(command, str(path))
        assert result.exit_code == 2
        assert f"eval.jsonl:1: sample `big`: `input_ids` must hold non-negative integers only (below 2^63); " \
               f"input_ids[2] is {shown}" in result.stderr


def test_token_ids_beyond_the_vocabulary_name_the_sample_id_and_position(mini):
    # A model that accepts any id (modulo) but scores a 16-token vocabulary: the targets index past it.
    (mini.root / "modulo.py").write_text(
        "import torch\n\n\ndef build():\n"
        "    class Modulo(torch.nn.Module):\n"
        "        def forward(self, ids):\n"
        "            return torch.nn.functional.one_hot(ids % 16, 16).float()\n"
        "    return Modulo()\n")
    lines = [json.dumps({"id": f"s{i}", "input_ids": [1, 2, 3]}) for i in range(3)]
    lines.append(json.dumps({"id": "wide", "input_ids": [1, 2, 40, 3]}))
    (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")
    text = contract_text().replace("model.py:build", "modulo.py:build").split("slices:")[0]
    path = mini.write("vocab.yaml", text)
    result = run("check", str(path))
    assert result.exit_code == 3, result.output  # the identity check: invalid (issue 23)
    assert ("eval set line 4: sample `wide` has token id 40 at position 2 (input_ids[2]), beyond the model's "
            "vocabulary of 16 ids (0..15)") in result.stderr


@pytest.mark.parametrize("args", [["--drift", "nan"], ["--osc", "inf"], ["--drift", "0.1", "--reward-range", "0",
                                                                          "nan"], ["--drift", "0.1", "--clip", "inf"]])
def test_bounds_rejects_non_finite_flags(args):
    result = run("bounds", *args)
    assert result.exit_code == 2 and "is not a finite number" in result.stderr


def test_bounds_of_a_huge_oscillation_are_infinite_not_a_crash():
    result = run("bounds", "--osc", "1e308", "--advantage-max", "1", "--score-norm", "1", "--format", "json")
    assert result.exit_code == 0
    chain = {link["name"]: link["bound"] for link in json.loads(result.stdout)}
    assert chain["importance_weight_max"] is None and chain["tv"] == 1.0


# Edge values `validate` accepts: `check` must evaluate every one (pass or fail), never exit 3.
ACCEPTED_EDGES = [
    {"MIN": "0.5, max: 0.5"},  # min == max
    {"MAX": "-1"},  # a bound no KL can meet (fails, with a chain warning)
    {"MAX": "1.7e308", "MIN": "-1.7e308", "SMAX": "1e308"},
    {"TIE": "0", "DROP": "0"},
    {"TIE": "1e308", "DROP": "1e308"},
    {"ALPHA": "1e-300", "POWER": "1e-300"},
    {"ALPHA": "0.4999999", "POWER": "0.9999999"},
    {"QUANTILES": "1000", "RESAMPLES": "99"},
    {"SMAX": "-1e-300"},
]


@pytest.mark.parametrize("values", ACCEPTED_EDGES, ids=lambda v: ",".join(f"{k}={w}" for k, w in v.items()))
def test_what_validate_accepts_check_evaluates(mini, values):
    text = with_implications(contract_text(**values), "{reward_range: [0, 0], seq_len: 1000000000, clip: 1e308, "
                             "advantage_max: 1e308, score_norm: 1e308}")
    path = mini.write("edge.yaml", text)
    assert run("validate", str(path)).exit_code == 0
    result = run("check", str(path), "--format", "json")
    assert result.exit_code in (0, 1), result.stderr
    assert json.loads(result.stdout)["verdict"] != "error"


def test_the_typed_build_rejects_what_the_schema_let_through(mini):
    # build_contract on a parsed (not schema-checked) document: the model gives the same guarantee.
    from promote.contract.load import parse_yaml
    from promote.contract.model import build_contract

    text = with_implications(contract_text(MAX=".nan", MIN="0.5, max: 0.25"), "{reward_range: [2, 1]}")
    contract, problems = build_contract(parse_yaml(mini.write("typed.yaml", text), env={}))
    assert contract is None
    messages = {p.path: p.message for p in problems if p.severity == "error"}
    assert messages["$.numerical.clauses[0].max"].startswith("`max` must be a finite number, got `.nan`")
    assert "is above `max`" in messages["$.numerical.clauses[1].min"]
    assert "swap the two values" in messages["$.numerical.implications.reward_range"]
