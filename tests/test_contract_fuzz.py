"""Issue 9, class 3: no contract makes `validate` or the typed-model build crash.

Contracts are generated two ways: from the contract JSON Schema itself (hypothesis-jsonschema), and
by mutating the shipped example contracts (examples/*/*.yaml) with values people and tools get wrong
(NaN, infinities, huge integers, NUL characters, quoted numbers, wrong types, unknown keys). Every one
is run through `promote validate` in-process and through `load_contract` (schema + typed model): the
only outcomes allowed are exit 0 or exit 2 with located messages, never an exception. Derandomized,
so CI sees the same examples every run; under a minute on one core.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from promote.cli import cli
from promote.contract.load import ContractError
from promote.contract.model import load_contract
from promote.contract.yaml_numbers import ContractLoader
from promote.resources import load_schema

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*/*.yaml"))
SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])

#: Values that broke promote before (issue 9) or plausibly could: each is tried at every leaf of the
#: shipped contracts below, and drawn at random in the mutation test.
EDGE_VALUES = [math.nan, 2**64, -1, "a\0b", {}]
TRICKY = st.one_of(
    st.sampled_from([*EDGE_VALUES, "1e-3", None, -math.inf, math.inf, 1e308, -1e308, 2**63, 10**20, 0, 1.5,
                     5e-324, "", True, [], "${UNSET_FUZZ_VAR}", -(2**63), -0.0, "\0", ".nan", "$${", "${", False,
                     [1, "a"], {"a": 1},
                     "x" * 3000, "model.py:build", "eval.jsonl", "../" * 40 + "etc/passwd"]),
    st.floats(), st.integers(), st.text(max_size=20),
)


def build(path: Path) -> None:
    """The typed build (schema, then model.py) raises nothing but ContractError, with messages."""
    try:
        load_contract(path, env={})
    except ContractError as exc:
        assert exc.problems and all(p.message and p.line for p in exc.problems), [str(p) for p in exc.problems]


def no_crash(path: Path) -> None:
    """`validate` exits 0 or 2 without an exception, and so does the typed build."""
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output + result.stderr
    if result.exit_code == 2:
        assert result.stderr.strip(), "exit 2 must say why"
    build(path)


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A directory per example with links to its files, so mutated contracts resolve real paths."""
    dirs = {}
    for example in {p.parent for p in EXAMPLES}:
        target = tmp_path_factory.mktemp(example.name)
        for item in example.iterdir():
            (target / item.name).symlink_to(item)
        dirs[example.name] = target
    return dirs


@settings(max_examples=40, **SETTINGS)
@given(contract=from_schema(load_schema("contract")), keep_example_kernels=st.booleans())
def test_contracts_generated_from_the_schema_never_crash(playground, contract, keep_example_kernels):
    if keep_example_kernels:  # reach the typed build's later checks with kernels and data that exist
        contract.update(reference={"kind": "torch", "model": "model.py:build"},
                        candidate={"kind": "torch", "model": "model.py:build"},
                        data={**contract.get("data", {}), "path": "eval.jsonl"})
    path = playground["tiny_lm"] / "generated.yaml"
    path.write_text(yaml.safe_dump(contract, allow_unicode=True), encoding="utf-8")
    no_crash(path)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node's path, leaves (the values people type) listed three times to draw them more often."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += _paths(value, (*prefix, index))
    else:
        out += [prefix, prefix]
    return out


def _replaced(data: Any, where: tuple, value: Any) -> Any:
    if not where:
        return value
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[where[0]] = _replaced(data[where[0]], where[1:], value)
    return copy


def _load(source: Path) -> Any:
    return yaml.load(source.read_text(encoding="utf-8"), Loader=ContractLoader)  # noqa: S506 - a safe loader


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_edge_value_at_every_leaf_of_the_examples(playground, source):
    data = _load(source)
    leaves = sorted({p for p in _paths(data) if p and not isinstance(_get(data, p), (dict, list))}, key=str)
    path = playground[source.parent.name] / f"edge-{source.name}"
    for where in leaves:
        for value in EDGE_VALUES:
            path.write_text(yaml.safe_dump(_replaced(data, where, value), allow_unicode=True), encoding="utf-8")
            build(path)


def _get(data: Any, where: tuple) -> Any:
    for part in where:
        data = data[part]
    return data


@st.composite
def mutated_example(draw: st.DrawFn) -> tuple[str, str]:
    source = draw(st.sampled_from(EXAMPLES))
    data = _load(source)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_paths(data)[1:]))
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown_key"]))
        # a copy: TRICKY's `{}` and `[]` are shared objects, and a later mutation inside one planted here
        # would change it for every draw (and could plant it inside itself: a cycle)
        value = copy.deepcopy(draw(TRICKY))
        if action == "replace" or not isinstance(parent, dict):
            parent[where[-1]] = value
        elif action == "delete":
            del parent[where[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = value
    return source.parent.name, yaml.safe_dump(data, allow_unicode=True)


@settings(max_examples=100, **SETTINGS)
@given(example=mutated_example())
def test_mutated_example_contracts_never_crash(playground, example):
    directory, text = example
    path = playground[directory] / "mutated.yaml"
    path.write_text(text, encoding="utf-8")
    no_crash(path)


def test_every_example_contract_is_valid_as_shipped(playground):
    for source in EXAMPLES:
        result = CliRunner().invoke(cli, ["validate", str(source)])
        assert result.exit_code == 0, (source, result.stderr)
