"""Issue 9, class 4: numbers as people write them. YAML 1.2 / JSON spellings (`1e-3`, `1.0e6`,
`-2E+5`, `.5`) are numbers wherever a number is expected, in the file and after `${VAR}`
interpolation; a quoted value stays text and is rejected where a number is needed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.load import parse_yaml
from promote.contract.model import load_contract

CONTRACT = """\
version: 1
name: numbers
reference: {{kind: torch, model: "model.py:build", batch_size: 5}}
candidate: {{kind: torch, model: "model.py:build", batch_size: 5}}
data: {{path: eval.jsonl}}
numerical:
  tie_margin: {tie}
  clauses:
    - id: kl
      metric: kl
      stat: mean
      max: {bound}
"""


def write_contract(mini, bound: str, tie: str = "1e-3"):
    return mini.write("numbers.yaml", CONTRACT.format(bound=bound, tie=tie))


@pytest.mark.parametrize(("written", "value"), [
    ("1e-3", 1e-3), ("1.0e6", 1.0e6), ("-2E+5", -2e5), (".5", 0.5), ("+1e3", 1e3), ("2.5E-07", 2.5e-7),
    ("0.001", 0.001), ("1", 1),
])
def test_yaml_12_numbers_are_numbers_in_the_typed_contract(mini, written, value):
    contract, _ = load_contract(write_contract(mini, written, tie=written.lstrip("-")), env={})
    clause = contract.numerical.clauses[0]
    assert clause.max == value and type(clause.max) is type(value)
    assert contract.numerical.tie_margin == abs(value)


def test_numbers_resolve_the_same_way_in_lists_and_nested_mappings(tmp_path):
    path = tmp_path / "any.yaml"
    path.write_text("a: [1e-3, 1.0e6, -2E+5, .5, 7, 1e, e3, 1.2.3]\nb: {c: 3e2}\n")
    data = parse_yaml(path, env={}).data
    assert data["a"] == [1e-3, 1.0e6, -2e5, 0.5, 7, "1e", "e3", "1.2.3"]
    assert isinstance(data["a"][4], int) and data["b"]["c"] == 300.0


@pytest.mark.parametrize(("env", "value"), [({}, 1e-3), ({"KL_MAX": "2.5e-2"}, 0.025), ({"KL_MAX": "4E1"}, 40.0),
                                            ({"KL_MAX": ".5"}, 0.5), ({"KL_MAX": ""}, 1e-3)])
def test_interpolated_numbers_use_the_same_rules(mini, env, value):
    contract, _ = load_contract(write_contract(mini, "${KL_MAX:-1e-3}"), env=env)
    assert contract.numerical.clauses[0].max == value


def test_a_quoted_number_stays_text_and_is_rejected_with_its_place(mini):
    path = write_contract(mini, '"1e-3"')
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert f'{path}:12:12: error: `max` must be a number, got string "1e-3"' in result.stderr
    # quoted inside a ${...} reference: the substituted text stays a string too
    quoted_ref = write_contract(mini, '"${KL_MAX:-1e-3}"')
    result = CliRunner().invoke(cli, ["validate", str(quoted_ref)])
    assert result.exit_code == 2 and "`max` must be a number, got a string from `${KL_MAX:-1e-3}`" in result.stderr


def test_an_integer_key_names_the_whole_number_to_write(mini):
    text = CONTRACT.format(bound="1e-3", tie="0").replace("batch_size: 5}\ncandidate", "batch_size: 1e1}\ncandidate")
    path = mini.write("ints.yaml", text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert (f"{path}:3:63: error: `batch_size` must be an integer, got number 10.0; write it as a whole number "
            "without a point or exponent: 10") in result.stderr
