"""Load a YAML contract file and report every problem in it as ``file:line:col: error: message``.

Why this module exists: PyYAML and jsonschema report problems in terms of their own internals (a
traceback, ``'x' is not valid under any of the given schemas``), but a person editing a contract needs
the file, the line, the key and the fix. So the loader keeps a line and column for every node while
parsing, and rewords each schema error into one line, placed at the offending node, that ends with what
to do. It knows nothing about the contract's schema: the schema is passed in, so the same loader serves
any YAML file promote reads.

This module reads the file and turns YAML nodes into data with positions; the pieces it delegates
live beside it: problems.py (Problem, ContractError, LoadedDocument), interpolate.py (``${VARS}``),
schema_messages.py (jsonschema errors in human words) and wording.py (how messages quote values).
Their public names are re-exported here, so ``from promote.contract.load import ...`` keeps working.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from promote.bounded import MIB, NotRegularFile, open_regular
from promote.contract.evaluable import unevaluable_values
from promote.contract.interpolate import Interpolator
from promote.contract.problems import (
    KEY,
    ContractError,
    JsonPath,
    LoadedDocument,
    Problem,
    fail,
    format_path,
    tidy,
)
from promote.contract.schema_messages import Translator
from promote.contract.wording import shorten
from promote.contract.yaml_numbers import ContractLoader
from promote.redact import register_interpolated

__all__ = [
    "KEY",
    "ContractError",
    "LoadedDocument",
    "Problem",
    "format_path",
    "load",
    "parse_yaml",
    "validate",
]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP, _MAP, _SEQ, _MERGE = (_TAG + t for t in ("timestamp", "map", "seq", "merge"))
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})

#: Aliases can make a tiny file expand exponentially ("billion laughs"); no real contract comes close.
_MAX_NODES = 1_000_000
MAX_CONTRACT_BYTES = 16 * MIB  # a contract is KBs; read no more of whatever the path names


# --------------------------------------------------------------------------------------------------
# Parsing


def parse_yaml(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> LoadedDocument:
    """Read, parse and interpolate a YAML file whose top level is a mapping.

    Raises ContractError (never a traceback) for anything a user must fix: a missing or unreadable
    file, bad encoding, bad YAML, duplicate or non-string keys, unset ``${VARS}``.
    ``env`` defaults to ``os.environ``; tests pass their own.
    """
    display = os.fsdecode(os.fspath(path))
    raw = _read(display)
    text = _decode(display, raw)
    root = _compose(display, text)
    builder = _Builder(display, os.environ if env is None else env)
    try:
        data = builder.build_document(root)
    except RecursionError:
        fail(display, "the YAML is nested too deeply to read; flatten it")
    finally:  # before any message can quote them: every value taken from the environment is masked
        register_interpolated(builder.variables)
    if builder.problems:
        raise ContractError(tidy(builder.problems))
    return LoadedDocument(
        path=Path(display).resolve(),
        display_path=display,
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        marks=builder.marks,
        interpolated=builder.interpolated,
        variables=dict(builder.variables),
    )


def _read(display: str) -> bytes:
    try:
        os.close(open_regular(display, MAX_CONTRACT_BYTES))  # a FIFO would block, /dev/zero fill memory
        return Path(display).read_bytes()
    except FileNotFoundError:
        fail(display, f"file not found: {display}")
    except IsADirectoryError:
        fail(display, f"{display} is a directory; pass the path of a YAML file")
    except NotRegularFile as exc:
        if os.path.isdir(display):
            fail(display, f"{display} is a directory; pass the path of a YAML file")
        fail(display, f"cannot read {display}: {exc.strerror}")
    except PermissionError:
        fail(display, f"cannot read {display}: permission denied")
    except OSError as exc:
        fail(display, f"cannot read {display}: {exc.strerror or exc}")


def _decode(display: str, raw: bytes) -> str:
    body = raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = body.rfind(b"\n", 0, exc.start) + 1
        line = body.count(b"\n", 0, exc.start) + 1
        col = len(body[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        fail(display, f"the file is not valid UTF-8 (byte 0x{body[exc.start]:02x}); save it as UTF-8", line, col)


def _compose(display: str, text: str) -> yaml.Node:
    """Parse to YAML nodes, not Python objects: nodes keep positions, and keep duplicate keys that
    PyYAML's constructor would silently collapse to the last one. Plain scalars resolve as YAML 1.2
    numbers (``1e-3`` is a float; yaml_numbers.py)."""
    try:
        root = yaml.compose(text, Loader=ContractLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _position(mark) if mark is not None else (None, None)
        fail(display, _yaml_message(exc, text), line, col)
    except yaml.reader.ReaderError as exc:
        line, col = _index_position(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        fail(display, f"invalid YAML: unacceptable character #x{code:04x} ({exc.reason}); remove it", line, col)
    except yaml.YAMLError as exc:
        fail(display, f"invalid YAML: {exc}")
    except RecursionError:
        fail(display, "the YAML is nested too deeply to read; flatten it")
    if root is None:
        fail(display, "the file is empty; expected a YAML mapping")
    return root


_YAML_HINTS = {
    "found character '\\t'": "; indent with spaces, not tabs",
    "but found another document": "; keep one document per file (remove the extra `---`)",
    "mapping values are not allowed here": "; check this line's indentation, or quote a value that contains `: `",
}


def _yaml_message(exc: yaml.MarkedYAMLError, text: str) -> str:
    """yaml's own wording (it is precise), plus where the construct began and a hint for the usual causes."""
    mark = exc.problem_mark
    if mark is not None and text[max(mark.index - 1, 0) : mark.index + 1] == "${":
        # `{a: ${X}}`: in flow style the `{` of `${` reads as a nested mapping.
        return (f"invalid YAML: {exc.problem}; inside {{...}} or [...], quote values that use ${{...}} (quoted, the "
                "value is a string: for a number from the environment write this mapping in block style, one "
                "`key: ${...}` per line)")
    problem = exc.problem or exc.context or "cannot parse"
    if exc.context and exc.problem and problem.startswith("but "):
        text = f"invalid YAML: {exc.context}, {problem}"
    elif exc.context and exc.problem and exc.context_mark is not None:
        line, col = _position(exc.context_mark)
        text = f"invalid YAML: {problem} ({exc.context} at line {line}, column {col})"
    else:
        text = f"invalid YAML: {problem}"
    return text + "".join(hint for needle, hint in _YAML_HINTS.items() if needle in problem)


def _position(mark: yaml.Mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def _index_position(text: str, index: int) -> tuple[int, int]:
    return (text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1)


class _Builder:
    """Turns YAML nodes into plain Python data, recording each node's position on the way and
    substituting ``${VARS}`` in string values. Collects problems instead of stopping at the first."""

    def __init__(self, display: str, env: Mapping[str, str]) -> None:
        self.display = display
        self.env = env
        self.marks: dict[JsonPath, tuple[int, int]] = {}
        self.interpolated: dict[JsonPath, str] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._interpolator = Interpolator(env)
        self._open: set[int] = set()  # ids of nodes being built: an alias back to one is a cycle
        self._count = 0

    @property
    def variables(self) -> dict[str, str]:
        """Environment variables substituted so far: name -> value."""
        return self._interpolator.used

    def build_document(self, root: yaml.Node) -> Any:
        if not isinstance(root, yaml.MappingNode):
            line, col = _position(root.start_mark)
            fail(self.display, f"top level must be a mapping of keys, got {_node_kind(root)}", line, col)
        return self.build(root, ())

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.marks[path] = _position(node.start_mark)
        self._count += 1
        if self._count > _MAX_NODES:
            fail(self.display, f"the file expands to more than {_MAX_NODES:,} values through YAML aliases")
        if id(node) in self._open:
            self._add(node, path, "a YAML alias refers to a value that contains it; remove the cycle")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        return self._scalar(node, path)

    def _add(self, node: yaml.Node, path: JsonPath, message: str) -> None:
        line, col = _position(node.start_mark)
        self.problems.append(Problem(self.display, line, col, format_path(path), message))

    @contextlib.contextmanager
    def _opened(self, node: yaml.Node) -> Iterator[None]:
        self._open.add(id(node))
        try:
            yield
        finally:
            self._open.discard(id(node))

    def _sequence(self, node: yaml.SequenceNode, path: JsonPath) -> list[Any] | None:
        if node.tag != _SEQ:
            return self._unsupported_tag(node, path)
        with self._opened(node):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any] | None:
        if node.tag != _MAP:
            return self._unsupported_tag(node, path)
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges = []
        with self._opened(node):
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    merges.append(value_node)
                    continue
                key = self._key(key_node, path)
                if key is None:
                    continue
                if key in first_line:
                    message = f"duplicate key `{key}` (first defined at line {first_line[key]}); remove one"
                    self._add(key_node, path + (key,), message)
                    continue
                first_line[key] = key_node.start_mark.line + 1
                self._entry(result, path, key_node, value_node)
            # `<<: *defaults` fills in keys the mapping does not set itself (YAML merge key).
            for key_node, value_node in self._merged_pairs(merges, path, {id(node)}):
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR and key_node.value not in result:
                    self._entry(result, path, key_node, value_node)
        return result

    def _entry(self, result: dict[str, Any], path: JsonPath, key_node: yaml.Node, value_node: yaml.Node) -> None:
        key = key_node.value
        self.marks[path + (key, KEY)] = _position(key_node.start_mark)
        result[key] = self.build(value_node, path + (key,))

    def _merged_pairs(self, merges: list[yaml.Node], path: JsonPath, seen: set[int]) -> list[tuple[Any, Any]]:
        """Key/value nodes that merge keys bring in, earliest source first (it takes precedence)."""
        pairs: list[tuple[Any, Any]] = []
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    message = "`<<` (YAML merge) needs a mapping or a list of mappings, e.g. `<<: *defaults`"
                    self._add(source, path, message)
                    continue
                if id(source) in seen:
                    continue
                seen.add(id(source))
                pairs.extend((k, v) for k, v in source.value if k.tag != _MERGE)
                pairs.extend(self._merged_pairs([v for k, v in source.value if k.tag == _MERGE], path, seen))
        return pairs

    def _key(self, node: yaml.Node, path: JsonPath) -> str | None:
        """Keys must be strings: YAML reads `on:`, `1:` or `2024-01-01:` as other types, which no
        schema property can match, so say so at the key rather than as a confusing unknown key."""
        if not isinstance(node, yaml.ScalarNode):
            self._add(node, path, "a key must be a plain name, not a mapping or a list")
            return None
        if node.tag == _STR:
            return node.value
        if node.tag == _NULL and node.value in ("", "~"):
            self._add(node, path, "a key is empty; write a name before the `:`")
            return None
        kind = {_INT: "a number", _FLOAT: "a number", _BOOL: "true/false", _NULL: "null", _TIMESTAMP: "a date"}
        what = kind.get(node.tag, f"tag `{_short_tag(node.tag)}`")
        message = f'key `{node.value}` is read by YAML as {what}, not a name; quote it: "{node.value}"'
        self._add(node, path + (node.value,), message)
        return None

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        if node.tag == _TIMESTAMP:
            return node.value  # JSON has no date type: keep the text the user wrote
        if node.tag not in _SCALAR_TAGS:
            return self._unsupported_tag(node, path)
        try:
            value = self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError):
            self._add(node, path, f"cannot read `{shorten(node.value)}` as {_short_tag(node.tag)}; fix the value")
            return None
        if isinstance(value, str) and "${" in value:
            return self._interpolate(node, path, value)
        return value

    def _interpolate(self, node: yaml.ScalarNode, path: JsonPath, text: str) -> Any:
        """Expand ``${VARS}`` in a string value (interpolate.py), placing any mistakes at the node and
        remembering the raw text so that messages never quote a value from the environment."""
        expansion = self._interpolator.expand(text, plain=node.style is None)
        for message in expansion.problems:
            self._add(node, path, message)
        if expansion.substituted:
            self.interpolated[path] = text
        return expansion.value

    def _unsupported_tag(self, node: yaml.Node, path: JsonPath) -> None:
        message = (
            f"unsupported YAML tag `{_short_tag(node.tag)}`; write a plain string, number, true/false, "
            "null, list or mapping"
        )
        self._add(node, path, message)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    kinds = {_STR: "a string", _INT: "a number", _FLOAT: "a number", _BOOL: "true/false", _NULL: "null"}
    return kinds.get(node.tag, "a single value")


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


# --------------------------------------------------------------------------------------------------
# Validation


def validate(doc: LoadedDocument, schema: dict[str, Any]) -> list[Problem]:
    """Every schema problem in ``doc`` (not just the first), in human words, sorted by position.

    ``schema`` is a draft 2020-12 JSON Schema; ``format`` is checked too, integers must be written as
    integers, and every number must be finite and every string NUL-free (evaluable.py).
    """
    validator = _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    translator = Translator(doc, schema)
    try:
        problems = [problem for error in validator.iter_errors(doc.data) for problem in translator.translate(error)]
    except RecursionError:
        problems = [doc.problem((), "the document is nested too deeply to check; flatten it")]
    return tidy(problems + unevaluable_values(doc))


def _is_integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


#: Draft 2020-12, except that an integer key takes integers only: JSON Schema also counts 1000.0
#: (``1e3``) as an integer, but the code behind a count (``range``, thread pools) needs an int, and
#: rounding a float silently would hide a typo. schema_messages.py says how to write it instead.
_Validator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer)
)


def load(
    path: str | os.PathLike[str], schema: dict[str, Any], *, env: Mapping[str, str] | None = None
) -> LoadedDocument:
    """Parse and validate; raise ContractError listing every problem if any is an error."""
    doc = parse_yaml(path, env=env)
    problems = validate(doc, schema)
    if any(problem.severity == "error" for problem in problems):
        raise ContractError(problems)
    return doc
