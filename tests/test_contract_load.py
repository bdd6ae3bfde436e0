"""Tests for the generic YAML contract loader: every problem class is reported with the right
file:line:col and a message a person can act on, and never with a traceback."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from promote.contract.load import (
    KEY,
    ContractError,
    LoadedDocument,
    Problem,
    format_path,
    load,
    parse_yaml,
    validate,
)
from promote.errors import EXIT_USAGE, UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "load"
SCHEMA: dict[str, Any] = json.loads((FIXTURES / "schema.json").read_text(encoding="utf-8"))
SECRET = "s3cr3t-Value-9f2c7"


def fixture_errors(name: str, env: dict[str, str] | None = None) -> list[Problem]:
    """Problems from loading a fixture that must fail."""
    with pytest.raises(ContractError) as info:
        load(FIXTURES / name, SCHEMA, env=env or {})
    return info.value.problems


def parse_errors(path: Path | str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ContractError) as info:
        parse_yaml(path, env=env or {})
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "contract.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fixture_errors_in(tmp_path: Path, text: str) -> list[Problem]:
    """Problems from loading ``text`` against the test schema (it must fail)."""
    with pytest.raises(ContractError) as info:
        load(write(tmp_path, text), SCHEMA, env={})
    return info.value.problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def spots(problems: list[Problem]) -> list[tuple[int | None, int | None]]:
    return [(p.line, p.col) for p in problems]


VALID_HEAD = """\
version: 1
name: n
reference:
  kind: torch
  model: model.py:build
candidate:
  kind: onnx
  path: model.onnx
"""


# --------------------------------------------------------------------------------------------------
# A valid document


def test_valid_fixture_loads_to_plain_data() -> None:
    doc = load(FIXTURES / "valid.yaml", SCHEMA, env={})
    assert isinstance(doc, LoadedDocument)
    assert doc.data["reference"] == {"kind": "torch", "model": "model.py:build", "precision": "fp32"}
    assert doc.data["numerical"]["clauses"][1] == {"id": "agree", "metric": "argmax_agree", "stat": "mean", "min": 0.99}
    assert doc.data["runtime"] == {"repeats": 3, "tags": ["nightly", "bf16"], "by": ["domain", "length"]}
    assert validate(doc, SCHEMA) == []


def test_marks_cover_keys_values_and_list_items() -> None:
    doc = parse_yaml(FIXTURES / "valid.yaml", env={})
    assert doc.marks[()] == (2, 1)  # the root mapping starts at its first key, after the comment
    assert doc.marks[("numerical", KEY)] == (12, 1)
    assert doc.marks[("numerical",)] == (13, 3)
    assert doc.marks[("numerical", "clauses", 0)] == (14, 7)
    assert doc.marks[("numerical", "clauses", 0, "max")] == (17, 12)
    assert doc.marks[("numerical", "clauses", 0, "max", KEY)] == (17, 7)
    assert doc.marks[("numerical", "clauses", 1)] == (18, 7)
    assert doc.marks[("numerical", "clauses", 1, "min")] == (18, 58)
    assert doc.marks[("runtime", "tags", 0)] == (21, 10)
    assert doc.marks[("runtime", "tags", 1)] == (21, 19)


def test_locate_prefers_key_then_value_then_nearest_ancestor() -> None:
    doc = parse_yaml(FIXTURES / "valid.yaml", env={})
    assert doc.locate(("numerical",), key=True) == (12, 1)
    assert doc.locate(("numerical",)) == (13, 3)
    assert doc.locate(("numerical", "clauses", 0, "not-there")) == (14, 7)
    assert doc.locate(("numerical", "clauses", 0), key=True) == (14, 7)  # list items have no key
    problem = doc.problem(("runtime", "tags", 1), "bad tag", severity="warning")
    assert (problem.line, problem.col, problem.path, problem.severity) == (21, 19, "$.runtime.tags[1]", "warning")


def test_sha256_is_of_the_raw_bytes(tmp_path: Path) -> None:
    raw = b"\xef\xbb\xbfversion: 1\r\nname: n\r\n"  # a BOM and CRLFs: bytes differ from the decoded text
    path = tmp_path / "c.yaml"
    path.write_bytes(raw)
    doc = parse_yaml(path, env={})
    assert doc.sha256 == hashlib.sha256(raw).hexdigest()
    assert doc.sha256 != hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
    assert doc.data == {"version": 1, "name": "n"}


def test_display_path_is_as_given_and_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "version: 1\nname: [\n", "c.yaml")
    monkeypatch.chdir(tmp_path)
    problem = only(parse_errors("c.yaml"))
    assert str(problem).startswith("c.yaml:3:1: error: invalid YAML")
    write(tmp_path, "version: 1\n", "ok.yaml")
    doc = parse_yaml("ok.yaml", env={})
    assert doc.display_path == "ok.yaml"
    assert doc.path == (tmp_path / "ok.yaml").resolve()
    assert doc.path.is_absolute()


# --------------------------------------------------------------------------------------------------
# Problem, ContractError, paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "$"),
        (("numerical", "clauses", 3, "max"), "$.numerical.clauses[3].max"),
        (("weird key", 0), '$["weird key"][0]'),
        (("$schema",), '$["$schema"]'),
    ],
)
def test_format_path(path: tuple[str | int, ...], expected: str) -> None:
    assert format_path(path) == expected


def test_problem_str_omits_unknown_position_and_root_path() -> None:
    assert str(Problem("c.yaml", 3, 7, "$.a.b", "bad")) == "c.yaml:3:7: error: bad (at $.a.b)"
    assert str(Problem("c.yaml", None, None, "$.a", "bad", "warning")) == "c.yaml: warning: bad (at $.a)"
    assert str(Problem("c.yaml", None, None, "$", "file not found: c.yaml")) == "c.yaml: error: file not found: c.yaml"


def test_contract_error_is_a_usage_error_listing_problems_sorted() -> None:
    problems = [
        Problem("c.yaml", 9, 1, "$.b", "second"),
        Problem("c.yaml", 2, 5, "$.a", "first"),
        Problem("c.yaml", 2, 1, "$.a", "zeroth"),
    ]
    error = ContractError(problems)
    assert isinstance(error, UsageError)
    assert error.exit_code == EXIT_USAGE == 2
    assert [p.message for p in error.problems] == ["zeroth", "first", "second"]
    assert error.format_message().splitlines() == [
        "c.yaml:2:1: error: zeroth (at $.a)",
        "c.yaml:2:5: error: first (at $.a)",
        "c.yaml:9:1: error: second (at $.b)",
    ]
    out = io.StringIO()
    error.show(file=out)
    assert out.getvalue().splitlines()[0] == "c.yaml:2:1: error: zeroth (at $.a)"


# --------------------------------------------------------------------------------------------------
# Reading and parsing


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    problem = only(parse_errors(missing))
    assert problem.message == f"file not found: {missing}"
    assert (problem.file, problem.line, problem.col) == (str(missing), None, None)


def test_directory(tmp_path: Path) -> None:
    problem = only(parse_errors(tmp_path))
    assert "is a directory" in problem.message
    assert problem.line is None


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "version: 1\n")
    # chmod 0 does not stop root (CI runs as root), so the OS refusal is simulated at the read call.
    real_read_bytes = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    problem = only(parse_errors(path))
    assert "permission denied" in problem.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    problem = only(parse_errors(path))
    assert (problem.line, problem.col) == (2, 10)
    assert "not valid UTF-8" in problem.message
    assert "0xe9" in problem.message


def test_malformed_yaml_reports_yamls_position_and_problem() -> None:
    problem = only(fixture_errors("malformed.yaml"))
    assert (problem.line, problem.col) == (5, 9)
    assert problem.message.startswith("invalid YAML: mapping values are not allowed here")
    assert "indentation" in problem.message


def test_unclosed_quote_names_where_the_quote_began(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, 'version: 1\nname: "abc\nfoo: 1\n')))
    assert (problem.line, problem.col) == (4, 1)
    assert "while scanning a quoted scalar at line 2, column 7" in problem.message


def test_tab_indentation_gets_a_hint(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, "version: 1\nname:\n\tx: 1\n")))
    assert (problem.line, problem.col) == (3, 1)
    assert problem.message.endswith("indent with spaces, not tabs")


def test_env_reference_in_flow_mapping_gets_a_quoting_hint(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, "reference: {kind: torch, model: ${M}}\n")))
    assert problem.line == 1
    assert "quote values that use ${...}" in problem.message
    # Quoting makes a string, so the hint also says how to get a number from the environment.
    assert "block style" in problem.message


def test_two_documents(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, "version: 1\n---\nname: x\n")))
    assert (problem.line, problem.col) == (2, 1)
    assert "expected a single document in the stream, but found another document" in problem.message


@pytest.mark.parametrize("name", ["empty.yaml", "comments_only.yaml"])
def test_empty_and_comment_only_files(name: str) -> None:
    problem = only(fixture_errors(name))
    assert problem.message == "the file is empty; expected a YAML mapping"
    assert problem.path == "$"


@pytest.mark.parametrize(("name", "got"), [("top_list.yaml", "a list"), ("top_scalar.yaml", "a string")])
def test_top_level_must_be_a_mapping(name: str, got: str) -> None:
    problem = only(fixture_errors(name))
    assert problem.message == f"top level must be a mapping of keys, got {got}"
    assert (problem.line, problem.col) == (1, 1)


def test_duplicate_nested_key_names_both_lines() -> None:
    problem = only(fixture_errors("duplicate_nested.yaml"))
    assert (problem.line, problem.col) == (7, 3)
    assert problem.message == "duplicate key `precision` (first defined at line 6); remove one"
    assert problem.path == "$.reference.precision"


def test_duplicate_keys_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nversion: 1\nname: b\nref:\n  x: 1\n  x: 2\n")
    problems = parse_errors(path)
    assert spots(problems) == [(3, 1), (6, 3)]
    assert "first defined at line 1" in problems[0].message
    assert "first defined at line 5" in problems[1].message


def test_non_string_keys(tmp_path: Path) -> None:
    problems = parse_errors(write(tmp_path, "version: 1\n1: x\non: y\n"))
    assert spots(problems) == [(2, 1), (3, 1)]
    assert problems[0].message == 'key `1` is read by YAML as a number, not a name; quote it: "1"'
    assert "true/false" in problems[1].message


def test_unsupported_tag(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, "version: 1\nname: !!binary aGVsbG8=\n")))
    assert (problem.line, problem.col) == (2, 7)
    assert "unsupported YAML tag `!!binary`" in problem.message


def test_anchors_and_aliases_are_allowed(tmp_path: Path) -> None:
    text = "defaults: &d {kind: torch, model: m.py:f}\nreference: *d\nlist: [&x 1, *x]\n"
    doc = parse_yaml(write(tmp_path, text), env={})
    assert doc.data["reference"] == {"kind": "torch", "model": "m.py:f"}
    assert doc.data["list"] == [1, 1]
    doc.data["reference"]["kind"] = "changed"  # aliases become copies, not shared objects
    assert doc.data["defaults"]["kind"] == "torch"


def test_merge_keys_fill_in_unset_keys(tmp_path: Path) -> None:
    text = "base: &b\n  kind: torch\n  precision: fp32\ncandidate:\n  <<: *b\n  precision: bf16\n"
    doc = parse_yaml(write(tmp_path, text), env={})
    assert doc.data["candidate"] == {"kind": "torch", "precision": "bf16"}
    assert doc.marks[("candidate", "precision")] == (6, 14)
    assert doc.marks[("candidate", "kind")] == (2, 9)  # where the merged value is written


def test_recursive_alias_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, "version: 1\nname: &a [*a]\n")))
    assert (problem.line, problem.col) == (2, 7)
    assert "contains it" in problem.message


# --------------------------------------------------------------------------------------------------
# Schema errors


def test_unknown_keys_at_top_level_nested_and_in_list_items() -> None:
    problems = fixture_errors("unknown_keys.yaml")
    by_path = {p.path: p for p in problems}
    top = by_path["$.numercal"]
    assert (top.line, top.col) == (9, 1)
    assert top.message == (
        "unknown key `numercal`; did you mean `numerical`? "
        "allowed keys: candidate, description, name, numerical, reference, runtime, version"
    )
    nested = by_path["$.runtime.repeets"]
    assert (nested.line, nested.col) == (12, 3)
    assert nested.message == "unknown key `repeets`; did you mean `repeats`? allowed keys: by, repeats, tags"
    item = by_path["$.numerical.clauses[0].maxx"]
    assert (item.line, item.col) == (18, 7)
    assert item.message == "unknown key `maxx`; did you mean `max`? allowed keys: id, max, metric, min, stat"


def test_unknown_key_without_a_close_match_has_no_guess(tmp_path: Path) -> None:
    problem = only(fixture_errors_in(tmp_path, VALID_HEAD + "zzzzzz: 1\n"))
    assert problem.message.startswith("unknown key `zzzzzz`; allowed keys: ")
    assert "did you mean" not in problem.message
    assert (problem.line, problem.col) == (9, 1)


def test_wrong_type() -> None:
    problem = only(fixture_errors("wrong_type.yaml"))
    assert (problem.line, problem.col) == (10, 12)
    assert problem.message == '`max` must be a number, got string "abc"'
    assert problem.path == "$.numerical.clauses[0].max"


def test_wrong_type_truncates_long_values(tmp_path: Path) -> None:
    problem = only(fixture_errors_in(tmp_path, VALID_HEAD + "runtime:\n  repeats: " + "x" * 100 + "\n"))
    assert problem.message == '`repeats` must be an integer, got string "' + "x" * 37 + '..."'


def test_missing_required_keys_are_located_at_the_parent() -> None:
    problems = fixture_errors("missing_required.yaml")
    assert [(p.line, p.col, p.message, p.path) for p in problems] == [
        (1, 1, "missing required key `name` in the top level", "$"),
        (2, 1, "missing required key `model` in `reference`", "$.reference"),
    ]


def test_enum_near_miss() -> None:
    problem = only(fixture_errors("enum_near_miss.yaml"))
    assert (problem.line, problem.col) == (6, 14)
    assert problem.message == (
        "`bf17` is not an allowed value for `precision`; did you mean `bf16`? allowed: bf16, fp16, fp32, tf32"
    )


def test_oneof_with_unknown_kind_lists_kinds() -> None:
    problem = only(fixture_errors("oneof_bad_kind.yaml"))
    assert (problem.line, problem.col) == (7, 9)
    assert problem.message == "`onxx` is not an allowed value for `kind`; did you mean `onnx`? allowed: onnx, torch"
    assert problem.path == "$.candidate.kind"


def test_oneof_with_good_kind_reports_that_branchs_error() -> None:
    problem = only(fixture_errors("oneof_bad_nested.yaml"))
    assert (problem.line, problem.col) == (6, 3)
    assert problem.message == (
        "unknown key `weigths`; did you mean `weights`? allowed keys: kind, model, precision, weights"
    )
    assert "any of the given schemas" not in str(problem)


def test_oneof_without_kind(tmp_path: Path) -> None:
    text = VALID_HEAD.replace("  kind: onnx\n", "")
    problem = only(fixture_errors_in(tmp_path, text))
    assert (problem.line, problem.col) == (6, 1)
    assert problem.message == "missing required key `kind` in `candidate`; allowed `kind` values: onnx, torch"


def test_discriminator_enum_and_oneof_report_once(tmp_path: Path) -> None:
    # The real contract schema constrains `kind` both with an enum and through the oneOf branches.
    schema = {
        "type": "object",
        "properties": {
            "reference": {
                "type": "object",
                "required": ["kind"],
                "properties": {"kind": {"enum": ["torch"]}},
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["kind", "model"],
                        "properties": {"kind": {"const": "torch"}, "model": {"type": "string"}},
                    }
                ],
            }
        },
    }
    doc = parse_yaml(write(tmp_path, "reference:\n  kind: tourch\n"), env={})
    problem = only(validate(doc, schema))
    assert (problem.line, problem.col) == (2, 9)
    assert problem.message == "`tourch` is not an allowed value for `kind`; did you mean `torch`? allowed: torch"
    doc = parse_yaml(write(tmp_path, "reference:\n  model: m\n"), env={})
    problem = only(validate(doc, schema))
    assert problem.message == "missing required key `kind` in `reference`; allowed `kind` values: torch"


def test_oneof_by_type_names_the_expected_types(tmp_path: Path) -> None:
    problem = only(fixture_errors_in(tmp_path, VALID_HEAD + "runtime:\n  by: 3\n"))
    assert (problem.line, problem.col) == (10, 7)
    assert problem.message == "`by` must be a string or a list, got integer 3"


def test_oneof_by_type_reports_errors_of_the_matching_type(tmp_path: Path) -> None:
    problem = only(fixture_errors_in(tmp_path, VALID_HEAD + "runtime:\n  by: [domain, 7]\n"))
    assert (problem.line, problem.col) == (10, 16)
    assert problem.message == "`by[1]` must be a string, got integer 7"


def test_anyof_of_required_keys(tmp_path: Path) -> None:
    text = VALID_HEAD + "numerical:\n  clauses:\n    - id: a\n      metric: kl\n      stat: p99\n"
    problem = only(fixture_errors_in(tmp_path, text))
    assert (problem.line, problem.col) == (11, 7)
    assert problem.message == "missing required key `max` or `min` in `clauses[0]`"


def test_oneof_matching_several_forms(tmp_path: Path) -> None:
    schema = {"properties": {"n": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}}
    problem = only(validate(parse_yaml(write(tmp_path, "n: 3\n"), env={}), schema))
    assert (problem.line, problem.col) == (1, 4)
    assert "matches more than one of the allowed forms" in problem.message


@pytest.mark.parametrize(
    ("schema", "text", "spot", "message"),
    [
        ({"properties": {"v": {"const": 1}}}, "v: 2\n", (1, 4), "`v` must be `1`, got integer 2"),
        ({"properties": {"n": {"minimum": 1}}}, "n: 0\n", (1, 4), "`n` must be at least 1, got integer 0"),
        ({"properties": {"n": {"exclusiveMaximum": 1}}}, "n: 1.5\n", (1, 4), "`n` must be less than 1, got number 1.5"),
        ({"properties": {"l": {"minItems": 2}}}, "l: [a]\n", (1, 4), "`l` must have at least 2 items, got 1"),
        (
            {"properties": {"s": {"pattern": "^[a-z]+$", "description": "Lower-case letters. Nothing else."}}},
            "s: ABC\n",
            (1, 4),
            '`s` must match the pattern `^[a-z]+$`, got string "ABC"; expected: Lower-case letters.',
        ),
        (
            {"properties": {"l": {"uniqueItems": True}}},
            "l:\n  - a\n  - b\n  - a\n",
            (4, 5),
            "`l[2]` repeats `l[0]`; items in `l` must be unique, remove one",
        ),
        (
            {"properties": {"e": {"format": "email"}}},
            "e: nobody\n",
            (1, 4),
            '`e` must be a valid email, got string "nobody"',
        ),
        (
            {"properties": {"legacy": False}},
            "a: 1\nlegacy: {x: 1}\n",
            (2, 1),
            "`legacy` is not allowed here; remove it",
        ),
        (
            {"properties": {"a": {}}, "allOf": [{"properties": {"bee": {}}}], "unevaluatedProperties": False},
            "a: 1\nbe: 2\n",
            (2, 1),
            "unknown key `be`; did you mean `bee`? allowed keys: a, bee",
        ),
    ],
)
def test_other_keywords_read_well(
    tmp_path: Path, schema: dict[str, Any], text: str, spot: tuple[int, int], message: str
) -> None:
    problem = only(validate(parse_yaml(write(tmp_path, text), env={}), schema))
    assert ((problem.line, problem.col), problem.message) == (spot, message)


def test_multiple_errors_are_all_reported_in_file_order() -> None:
    problems = fixture_errors("multiple_errors.yaml")
    assert spots(problems) == [(1, 10), (6, 14), (7, 1), (12, 15), (14, 12), (16, 12), (17, 16), (18, 7)]
    messages = [p.message for p in problems]
    assert messages[0] == "`version` must be `1`, got integer 2"
    assert messages[2] == "missing required key `path` in `candidate`"
    assert messages[3].startswith("`kll` is not an allowed value for `metric`; did you mean `kl`?")
    assert messages[4] == '`max` must be a number, got string "0.1"'
    assert messages[7] == "`by` must be a string or a list, got integer 3"
    with pytest.raises(ContractError) as info:
        load(FIXTURES / "multiple_errors.yaml", SCHEMA, env={})
    assert len(info.value.format_message().splitlines()) == 8


def test_validate_returns_problems_without_raising() -> None:
    doc = parse_yaml(FIXTURES / "wrong_type.yaml", env={})
    problems = validate(doc, SCHEMA)
    assert [p.path for p in problems] == ["$.numerical.clauses[0].max"]


def test_problems_in_an_aliased_value_are_reported_once(tmp_path: Path) -> None:
    text = "version: 1\nname: n\nreference: &r\n  kind: torch\n  model: m.py:f\n  modle: x\ncandidate: *r\n"
    problem = only(fixture_errors_in(tmp_path, text))
    assert (problem.line, problem.col) == (6, 3)
    assert problem.message.startswith("unknown key `modle`; did you mean `model`?")


# --------------------------------------------------------------------------------------------------
# ${ENV} interpolation


def test_env_interpolation_set_default_escape_and_typing() -> None:
    doc = parse_yaml(FIXTURES / "env.yaml", env={"CONTRACT_NAME": "tiny", "KL_MAX": "0.5"})
    assert doc.data["name"] == "tiny"
    assert doc.data["description"] == "tiny"
    assert doc.data["reference"]["model"] == "model.py:build"  # default, containing a colon
    assert doc.data["reference"]["weights"] == "weights-local.safetensors"  # partial: default inline
    assert doc.data["candidate"]["path"] == "${NOT_A_VAR}/model.onnx"  # $${ escape
    assert doc.data["numerical"]["clauses"][0]["max"] == 0.5
    assert doc.data["numerical"]["clauses"][1]["min"] == "0.99"  # quoted: stays a string
    assert doc.interpolated[("numerical", "clauses", 0, "max")] == "${KL_MAX:-0.001}"
    assert ("candidate", "path") not in doc.interpolated


def test_plain_single_reference_is_re_read_as_a_yaml_scalar(tmp_path: Path) -> None:
    text = (
        "max: ${KL_MAX:-0.001}\n"
        "flag: ${FLAG:-true}\n"
        "count: ${COUNT}\n"
        "quoted: '${COUNT}'\n"
        "partial: ${COUNT}${COUNT}\n"
        "word: ${WORD:-fp32}\n"
        "empty: ${EMPTY:-fallback}\n"
        "blank: ${EMPTY}\n"
    )
    data = parse_yaml(write(tmp_path, text), env={"COUNT": "3", "EMPTY": ""}).data
    assert data["max"] == 0.001 and isinstance(data["max"], float)
    assert data["flag"] is True
    assert data["count"] == 3 and isinstance(data["count"], int)
    assert data["quoted"] == "3"
    assert data["partial"] == "33"
    assert data["word"] == "fp32"
    assert data["empty"] == "fallback"  # `:-` also replaces a set-but-empty variable, as in the shell
    assert data["blank"] == ""


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_TEST_NAME", "from-environ")
    assert parse_yaml(write(tmp_path, "name: ${PROMOTE_TEST_NAME}\n")).data == {"name": "from-environ"}


def test_keys_are_never_interpolated(tmp_path: Path) -> None:
    doc = parse_yaml(write(tmp_path, "${KEY}: ${VALUE}\n"), env={"KEY": "k", "VALUE": "v"})
    assert doc.data == {"${KEY}": "v"}


def test_unset_variables_without_default_are_all_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMOTE_UNSET_A", raising=False)
    monkeypatch.delenv("PROMOTE_UNSET_B", raising=False)
    text = "version: 1\nname: ${PROMOTE_UNSET_A}\nlist:\n  - ok\n  - x-${PROMOTE_UNSET_B}-y\n"
    problems = parse_errors(write(tmp_path, text), env=dict(os.environ))
    assert spots(problems) == [(2, 7), (5, 5)]
    assert problems[0].message == (
        "environment variable `PROMOTE_UNSET_A` is not set and has no default; "
        "set it or write ${PROMOTE_UNSET_A:-value}"
    )
    assert problems[1].path == "$.list[1]"
    assert "`PROMOTE_UNSET_B`" in problems[1].message


def test_malformed_reference(tmp_path: Path) -> None:
    problem = only(parse_errors(write(tmp_path, "name: ${1X}\n")))
    assert (problem.line, problem.col) == (1, 7)
    assert problem.message.startswith("`${1X}` is not a valid reference; write ${NAME} or ${NAME:-default}")


def test_secret_values_never_appear_in_messages(tmp_path: Path) -> None:
    text = (
        "version: ${SECRET}\n"
        "name: n\n"
        "reference:\n"
        "  kind: torch\n"
        "  model: ${SECRET}\n"
        "  precision: ${SECRET}\n"
        "candidate:\n"
        "  kind: onnx\n"
        "  path: ${SECRET}\n"
        "runtime:\n"
        "  repeats: ${SECRET}\n"
        "  tags: ['${SECRET}', '${SECRET}']\n"
    )
    with pytest.raises(ContractError) as info:
        load(write(tmp_path, text), SCHEMA, env={"SECRET": SECRET})
    problems = info.value.problems
    assert spots(problems) == [(1, 10), (5, 10), (6, 14), (11, 12), (12, 23)]
    assert problems[0].message == "`version` must be `1`, got a string from `${SECRET}`"
    assert problems[2].message.startswith("the value from `${SECRET}` is not an allowed value for `precision`")
    rendered = str(info.value) + info.value.format_message() + "".join(repr(p) for p in problems)
    assert SECRET not in rendered
    assert SECRET[:12] not in rendered


def test_fixture_quoted_env_value_fails_type_check_without_leaking() -> None:
    problem = only(fixture_errors("env.yaml", env={"CONTRACT_NAME": SECRET}))
    assert (problem.line, problem.col) == (20, 12)
    assert problem.message == "`min` must be a number, got a string from `${AGREE_MIN:-0.99}`"
    assert SECRET not in str(problem)


def test_a_contract_from_data_in_memory_resolves_paths_beside_its_base_and_is_checked(mini):
    """calibrate --derive builds the derived contract in memory (contract/from_data.py): the same
    schema and semantic checks as a file, relative paths anchored at the original's directory."""
    import copy

    from promote.contract.from_data import contract_from_data
    from promote.contract.model import load_contract

    original, _ = load_contract(mini.contract())
    data = copy.deepcopy(original.source.data)
    data["numerical"]["clauses"][0]["max"] = 0.125
    derived = contract_from_data(data, original.source)
    assert derived.numerical.clauses[0].max == 0.125 and derived.path == original.path
    assert derived.data.path == original.data.path
    assert original.numerical.clauses[0].max != 0.125  # the original is untouched
    data["numerical"]["clauses"][0]["max"] = "low"
    with pytest.raises(ContractError) as exc:
        contract_from_data(data, original.source)
    assert "(derived)" in str(exc.value) and "max" in str(exc.value)
