"""Load a YAML contract file and report every problem in it as ``file:line:col: error: message``.

Why this module exists: PyYAML and jsonschema report problems in terms of their own internals (a
traceback, ``'x' is not valid under any of the given schemas``), but a person editing a contract needs
the file, the line, the key and the fix. So the loader keeps a line and column for every node while
parsing, and rewords each schema error into one line, placed at the offending node, that ends with what
to do. It knows nothing about the contract's schema: the schema is passed in, so the same loader serves
any YAML file promote reads.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from promote.errors import UsageError

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

JsonPath = tuple[str | int, ...]

#: Path element under which a mapping key's own position is recorded: ``marks[("numerical", KEY)]``.
KEY = "<key>"

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP, _MAP, _SEQ, _MERGE = (_TAG + t for t in ("timestamp", "map", "seq", "merge"))
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})

#: Aliases can make a tiny file expand exponentially ("billion laughs"); no real contract comes close.
_MAX_NODES = 1_000_000
#: How much of a user's value to quote back in a message.
_SHOW_CHARS = 40

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_WHOLE_REFERENCE = re.compile(r"\$\{[^}]*\}")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


# --------------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, pointing at where to fix it.

    Kept as data rather than a string so callers can sort, filter by severity, or render problems in a
    report; ``str()`` gives the compiler-style line that editors and CI logs turn into links.
    """

    file: str
    line: int | None
    col: int | None
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" if self.col is None else f":{self.line}:{self.col}"
        text = f"{where}: {self.severity}: {self.message}"
        # "(at $)" says nothing the file name does not: file-level problems omit it.
        return text if self.path == "$" else f"{text} (at {self.path})"


def _order(problem: Problem) -> tuple[int, int, str, str]:
    return (problem.line or 0, problem.col or 0, problem.path, problem.message)


class ContractError(UsageError):
    """A file promote cannot use (exit 2). Carries every problem found, not only the first, so one
    edit fixes them all instead of one edit per run."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=_order)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print one problem per line, each starting with ``file:line:col``; the usual
        ``promote: error:`` prefix would stop editors and CI logs from linking to the spot."""
        for problem in self.problems:
            click.echo(str(problem), err=True, file=file)


def format_path(path: Sequence[str | int]) -> str:
    """``("numerical", "clauses", 0, "max")`` -> ``$.numerical.clauses[0].max``: the JSONPath form
    people know from jq and editors, with odd keys quoted so the path stays unambiguous."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def _fail(file: str, message: str, line: int | None = None, col: int | None = None) -> NoReturn:
    raise ContractError([Problem(file, line, col, "$", message)])


# --------------------------------------------------------------------------------------------------
# The loaded document


@dataclass
class LoadedDocument:
    """A parsed file plus what is needed to point back into it: positions of every node, the raw
    hash (so a report can prove which contract it used), and which values came from the environment
    (so messages never quote them)."""

    path: Path
    display_path: str
    text: str
    sha256: str
    data: Any
    marks: dict[JsonPath, tuple[int, int]]
    #: path -> the raw text, e.g. ``"${KL_MAX:-0.001}"``, of values that went through ``${...}``.
    interpolated: dict[JsonPath, str] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column (1-based) of the node at ``path``, or of its key with ``key=True``.

        Falls back to the nearest ancestor, because a problem about something absent (a missing key)
        still belongs somewhere the user can see.
        """
        path = tuple(path)
        if key and path + (KEY,) in self.marks:
            return self.marks[path + (KEY,)]
        while path not in self.marks:
            if not path:
                return (None, None)
            path = path[:-1]
        return self.marks[path]

    def problem(
        self, path: Sequence[str | int], message: str, *, key: bool = False, severity: str = "error"
    ) -> Problem:
        """A Problem placed at ``path``, so callers with semantic checks report the same way."""
        line, col = self.locate(path, key=key)
        return Problem(self.display_path, line, col, format_path(path), message, severity)


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
        _fail(display, "the YAML is nested too deeply to read; flatten it")
    if builder.problems:
        raise ContractError(_tidy(builder.problems))
    return LoadedDocument(
        path=Path(display).resolve(),
        display_path=display,
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        marks=builder.marks,
        interpolated=builder.interpolated,
    )


def _read(display: str) -> bytes:
    try:
        return Path(display).read_bytes()
    except FileNotFoundError:
        _fail(display, f"file not found: {display}")
    except IsADirectoryError:
        _fail(display, f"{display} is a directory; pass the path of a YAML file")
    except PermissionError:
        _fail(display, f"cannot read {display}: permission denied")
    except OSError as exc:
        _fail(display, f"cannot read {display}: {exc.strerror or exc}")


def _decode(display: str, raw: bytes) -> str:
    body = raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = body.rfind(b"\n", 0, exc.start) + 1
        line = body.count(b"\n", 0, exc.start) + 1
        col = len(body[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        _fail(display, f"the file is not valid UTF-8 (byte 0x{body[exc.start]:02x}); save it as UTF-8", line, col)


def _compose(display: str, text: str) -> yaml.Node:
    """Parse to YAML nodes, not Python objects: nodes keep positions, and keep duplicate keys that
    PyYAML's constructor would silently collapse to the last one."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _position(mark) if mark is not None else (None, None)
        _fail(display, _yaml_message(exc, text), line, col)
    except yaml.reader.ReaderError as exc:
        line, col = _index_position(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        _fail(display, f"invalid YAML: unacceptable character #x{code:04x} ({exc.reason}); remove it", line, col)
    except yaml.YAMLError as exc:
        _fail(display, f"invalid YAML: {exc}")
    except RecursionError:
        _fail(display, "the YAML is nested too deeply to read; flatten it")
    if root is None:
        _fail(display, "the file is empty; expected a YAML mapping")
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
        return f"invalid YAML: {exc.problem}; inside {{...}} or [...], quote values that use ${{...}}"
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
        self._resolver = yaml.resolver.Resolver()
        self._open: set[int] = set()  # ids of nodes being built: an alias back to one is a cycle
        self._count = 0

    def build_document(self, root: yaml.Node) -> Any:
        if not isinstance(root, yaml.MappingNode):
            line, col = _position(root.start_mark)
            _fail(self.display, f"top level must be a mapping of keys, got {_node_kind(root)}", line, col)
        return self.build(root, ())

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.marks[path] = _position(node.start_mark)
        self._count += 1
        if self._count > _MAX_NODES:
            _fail(self.display, f"the file expands to more than {_MAX_NODES:,} values through YAML aliases")
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
            self._add(node, path, f"cannot read `{_shorten(node.value)}` as {_short_tag(node.tag)}; fix the value")
            return None
        if isinstance(value, str) and "${" in value:
            return self._interpolate(node, path, value)
        return value

    def _unsupported_tag(self, node: yaml.Node, path: JsonPath) -> None:
        message = (
            f"unsupported YAML tag `{_short_tag(node.tag)}`; write a plain string, number, true/false, "
            "null, list or mapping"
        )
        self._add(node, path, message)

    def _interpolate(self, node: yaml.ScalarNode, path: JsonPath, text: str) -> Any:
        """Substitute ``${NAME}`` / ``${NAME:-default}``; ``$${`` is a literal ``${``.

        A plain (unquoted) scalar that is exactly one reference is re-read as a YAML scalar, so
        ``max: ${KL_MAX:-0.001}`` is the number it would be if written out; quoting keeps a string.
        """
        pieces: list[str] = []
        end = 0
        references = 0
        for match in _REFERENCE.finditer(text):
            pieces.append(text[end : match.start()])
            end = match.end()
            if match.group(0) == "$${":
                pieces.append("${")
                continue
            references += 1
            pieces.append(self._substitute(node, path, match))
        pieces.append(text[end:])
        value = "".join(pieces)
        if references == 0:
            return value
        self.interpolated[path] = text
        if node.style is None and value and _WHOLE_REFERENCE.fullmatch(text):
            return self._resolve_plain(value)
        return value

    def _substitute(self, node: yaml.ScalarNode, path: JsonPath, match: re.Match[str]) -> str:
        body = match.group(1)
        parsed = _REFERENCE_BODY.fullmatch(body) if body is not None else None
        if parsed is None or "${" in (parsed.group(2) or ""):
            shown = "`${`" if body is None else f"`${{{_shorten(body)}}}`"
            message = f"{shown} is not a valid reference; write ${{NAME}} or ${{NAME:-default}}"
            message += ", or $${ for a literal ${"
            self._add(node, path, message)
            return ""
        name, default = parsed.group(1), parsed.group(2)
        value = self.env.get(name)
        # Shell semantics: `:-` also replaces a variable that is set but empty.
        if value is not None and (value != "" or default is None):
            return value
        if default is not None:
            return default
        message = f"environment variable `{name}` is not set and has no default; set it or write ${{{name}:-value}}"
        self._add(node, path, message)
        return ""

    def _resolve_plain(self, value: str) -> Any:
        tag = self._resolver.resolve(yaml.ScalarNode, value, (True, False))
        if tag in (_INT, _FLOAT, _BOOL, _NULL):
            return self._constructor.construct_object(yaml.ScalarNode(tag, value))
        return value


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

    ``schema`` is a draft 2020-12 JSON Schema; ``format`` is checked too.
    """
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    translator = _Translator(doc, schema)
    try:
        problems = [problem for error in validator.iter_errors(doc.data) for problem in translator.translate(error)]
    except RecursionError:
        problems = [doc.problem((), "the document is nested too deeply to check; flatten it")]
    return _tidy(problems)


def load(
    path: str | os.PathLike[str], schema: dict[str, Any], *, env: Mapping[str, str] | None = None
) -> LoadedDocument:
    """Parse and validate; raise ContractError listing every problem if any is an error."""
    doc = parse_yaml(path, env=env)
    problems = validate(doc, schema)
    if any(problem.severity == "error" for problem in problems):
        raise ContractError(problems)
    return doc


def _tidy(problems: list[Problem]) -> list[Problem]:
    """Drop repeats and sort by position.

    Repeats are real: a value shared through a YAML alias fails at every place it is used but has one
    spot to fix, and a discriminator error can arrive from both a property's `enum` and the `oneOf`.
    A message that another at the same spot extends (``msg`` vs ``msg; hint``) is dropped too.
    """
    unique: dict[tuple[Any, ...], Problem] = {}
    for problem in problems:
        spot = (problem.line, problem.col) if problem.line is not None else (problem.path,)
        unique.setdefault((*spot, problem.severity, problem.message), problem)
    kept = [p for p in unique.values() if not any(_extends(other, p) for other in unique.values())]
    return sorted(kept, key=_order)


def _extends(longer: Problem, shorter: Problem) -> bool:
    same_spot = (longer.line, longer.col, longer.path) == (shorter.line, shorter.col, shorter.path)
    return same_spot and longer.message.startswith(shorter.message + ";")


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}

_BOUND_WORDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "greater than",
    "exclusiveMaximum": "less than",
}


class _Translator:
    """Rewords jsonschema errors into Problems placed at the offending node.

    Each handler answers "what is wrong, with which key, and what would be right", naming the key
    (the path goes into Problem.path) and never quoting a value that came from the environment.
    """

    def __init__(self, doc: LoadedDocument, schema: dict[str, Any]) -> None:
        self.doc = doc
        self.schema = schema
        self._handlers = {
            "additionalProperties": self._additional,
            "unevaluatedProperties": self._unevaluated,
            "enum": self._enum,
            "const": self._const,
            "type": self._type,
            "required": self._required,
            "minimum": self._bound,
            "maximum": self._bound,
            "exclusiveMinimum": self._bound,
            "exclusiveMaximum": self._bound,
            "multipleOf": self._multiple_of,
            "minItems": self._size,
            "maxItems": self._size,
            "minLength": self._size,
            "maxLength": self._size,
            "minProperties": self._size,
            "maxProperties": self._size,
            "pattern": self._pattern,
            "format": self._format,
            "uniqueItems": self._unique,
            "oneOf": self._alternatives,
            "anyOf": self._alternatives,
            None: self._false_schema,
        }

    def translate(self, error: ValidationError) -> list[Problem]:
        handler = self._handlers.get(error.validator, self._generic)
        return handler(error)

    # -- helpers

    def _at(self, path: JsonPath, message: str, *, key: bool = False) -> Problem:
        return self.doc.problem(path, message, key=key)

    def _got(self, path: JsonPath, value: Any) -> str:
        """The value, briefly, for "got ..." (never a value that came from the environment)."""
        raw = self.doc.interpolated.get(path)
        if raw is not None:
            return f"{_kind(value)} from `{_shorten(raw)}`"
        return _describe(value)

    def _deref(self, schema: Any) -> Any:
        """Follow local ``$ref``s (``#/$defs/x``) so branch properties can be inspected."""
        for _ in range(32):
            ref = schema.get("$ref") if isinstance(schema, dict) else None
            target = _pointer(self.schema, ref[1:]) if isinstance(ref, str) and ref.startswith("#") else None
            if not isinstance(target, dict):
                return schema
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def _enum_problem(self, path: JsonPath, value: Any, allowed: Sequence[Any]) -> Problem:
        choices = ", ".join(sorted(_literal(choice) for choice in allowed))
        name = _name(path)
        if path in self.doc.interpolated:
            head, hint = f"the value from `{_shorten(self.doc.interpolated[path])}`", ""
        elif isinstance(value, (dict, list)) or value is None:
            return self._at(path, f"{name} must be one of: {choices}; got {_describe(value)}")
        else:
            head = f"`{_literal(value)}`"
            hint = _did_you_mean(value, [c for c in allowed if isinstance(c, str)]) if isinstance(value, str) else ""
        return self._at(path, f"{head} is not an allowed value for {name}; {hint}allowed: {choices}")

    def _type_problem(self, path: JsonPath, value: Any, expected: Sequence[str]) -> Problem:
        words = _join([_TYPE_WORDS.get(t, t) for t in expected], "or")
        return self._at(path, f"{_name(path)} must be {words}, got {self._got(path, value)}")

    # -- handlers, one per JSON Schema keyword

    def _additional(self, error: ValidationError) -> list[Problem]:
        if error.validator_value is not False or not isinstance(error.instance, dict):
            return self._generic(error)
        allowed = sorted(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        return self._unknown_keys(error, allowed, patterns)

    def _unevaluated(self, error: ValidationError) -> list[Problem]:
        if error.validator_value is not False or not isinstance(error.instance, dict):
            return self._generic(error)
        properties: set[str] = set()
        patterns: list[str] = []
        self._collect_properties(error.schema, properties, patterns, depth=0)
        return self._unknown_keys(error, sorted(properties), patterns) or self._generic(error)

    def _collect_properties(self, schema: Any, names: set[str], patterns: list[str], depth: int) -> None:
        """Property names a schema can evaluate, through allOf/anyOf/oneOf/if/then/else and $ref."""
        schema = self._deref(schema)
        if not isinstance(schema, dict) or depth > 16:
            return
        names.update(schema.get("properties", {}))
        patterns.extend(schema.get("patternProperties", {}))
        subschemas = [schema.get(k) for k in ("if", "then", "else")]
        subschemas += [s for k in ("allOf", "anyOf", "oneOf") for s in schema.get(k, [])]
        subschemas += list(schema.get("dependentSchemas", {}).values())
        for sub in subschemas:
            self._collect_properties(sub, names, patterns, depth + 1)

    def _unknown_keys(self, error: ValidationError, allowed: list[str], patterns: list[str]) -> list[Problem]:
        path = tuple(error.absolute_path)
        extras = [k for k in error.instance if k not in allowed and not any(re.search(p, k) for p in patterns)]
        problems = []
        for key in extras:
            hint = _did_you_mean(key, allowed)
            listing = f"allowed keys: {', '.join(allowed)}" if allowed else "no keys are allowed here"
            problems.append(self._at(path + (key,), f"unknown key `{key}`; {hint}{listing}", key=True))
        return problems

    def _enum(self, error: ValidationError) -> list[Problem]:
        return [self._enum_problem(tuple(error.absolute_path), error.instance, error.validator_value)]

    def _const(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        expected = _literal(error.validator_value)
        return [self._at(path, f"{_name(path)} must be `{expected}`, got {self._got(path, error.instance)}")]

    def _type(self, error: ValidationError) -> list[Problem]:
        expected = error.validator_value
        types = [expected] if isinstance(expected, str) else list(expected)
        return [self._type_problem(tuple(error.absolute_path), error.instance, types)]

    def _required(self, error: ValidationError) -> list[Problem]:
        if not isinstance(error.instance, dict):
            return []
        path = tuple(error.absolute_path)
        missing = [key for key in error.validator_value if key not in error.instance]
        # One jsonschema error per missing key, each answered with all of them; _tidy drops repeats.
        return [self._at(path, f"missing required key `{key}` in {_name(path)}", key=True) for key in missing]

    def _bound(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        words = _BOUND_WORDS[error.validator]
        limit, got = _literal(error.validator_value), self._got(path, error.instance)
        message = f"{_name(path)} must be {words} {limit}, got {got}"
        return [self._at(path, message)]

    def _multiple_of(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        step, got = _literal(error.validator_value), self._got(path, error.instance)
        message = f"{_name(path)} must be a multiple of {step}, got {got}"
        return [self._at(path, message)]

    def _size(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        bound = "at least" if error.validator.startswith("min") else "at most"
        unit = {"Items": "item", "Length": "character", "Properties": "key"}[error.validator[3:]]
        amount = _count(error.validator_value, unit)
        if unit == "character":
            message = f"{_name(path)} must be {bound} {amount} long, got {self._got(path, error.instance)}"
        else:
            message = f"{_name(path)} must have {bound} {amount}, got {len(error.instance)}"
        return [self._at(path, message)]

    def _pattern(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        got = self._got(path, error.instance)
        message = f"{_name(path)} must match the pattern `{error.validator_value}`, got {got}"
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        if isinstance(description, str) and description:
            message += f"; expected: {_first_sentence(description)}"
        return [self._at(path, message)]

    def _format(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        message = f"{_name(path)} must be a valid {error.validator_value}, got {self._got(path, error.instance)}"
        return [self._at(path, message)]

    def _unique(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        seen: dict[str, int] = {}
        problems = []
        for index, item in enumerate(error.instance):
            fingerprint = json.dumps(item, sort_keys=True, default=str)
            if fingerprint in seen:
                first = _name(path + (seen[fingerprint],))
                message = f"{_name(path + (index,))} repeats {first}; items in {_name(path)} must be unique, remove one"
                problems.append(self._at(path + (index,), message))
            else:
                seen[fingerprint] = index
        return problems or self._generic(error)

    def _false_schema(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        if not path and error.instance is not self.doc.data:
            # jsonschema drops the path of errors from a `false` subschema; find the value instead.
            found = list(_paths_to(self.doc.data, error.instance, ()))
            path = found[0] if len(found) == 1 else path
        return [self._at(path, f"{_name(path)} is not allowed here; remove it", key=True)]

    def _generic(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        if any(p[: len(path)] == path for p in self.doc.interpolated):
            # jsonschema's message quotes the value, which may have come from the environment.
            return [self._at(path, f"{_name(path)} is not valid (fails `{error.validator}`)")]
        return [self._at(path, f"{_name(path)} is not valid: {_shorten(error.message, 160)}")]

    # -- oneOf / anyOf

    def _alternatives(self, error: ValidationError) -> list[Problem]:
        """Report why the instance fits none of the alternatives, in terms of the one it was meant to
        be, rather than "is not valid under any of the given schemas"."""
        path = tuple(error.absolute_path)
        branches = [self._deref(branch) for branch in error.validator_value]
        groups: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            groups.setdefault(sub.relative_schema_path[0], []).append(sub)
        tag = _discriminator(branches)
        if tag is not None and isinstance(error.instance, dict):
            return self._discriminated(error, path, branches, groups, tag)
        required_keys = _required_only(branches)
        if not error.context:
            return [self._too_many(path, required_keys)]
        if required_keys:
            keys = _join([f"`{k}`" for k in required_keys], "or")
            return [self._at(path, f"missing required key {keys} in {_name(path)}", key=True)]
        viable = {i: errors for i, errors in groups.items() if not _wrong_type(errors, path)}
        if not viable:
            expected = _unique_list(t for errors in groups.values() for t in _types_at(errors, path))
            return [self._type_problem(path, error.instance, expected)]
        _, best = min(viable.items(), key=lambda item: (len(item[1]), -_depth(item[1]), item[0]))
        return [problem for sub in best for problem in self.translate(sub)]

    def _discriminated(
        self,
        error: ValidationError,
        path: JsonPath,
        branches: list[dict[str, Any]],
        groups: dict[int, list[ValidationError]],
        tag: str,
    ) -> list[Problem]:
        """Branches told apart by a constant property (``kind: torch`` / ``kind: onnx``): judge the
        instance by the branch its ``kind`` names, or say which kinds exist."""
        consts = [branch["properties"][tag]["const"] for branch in branches]
        if tag not in error.instance:
            allowed = ", ".join(sorted(_literal(c) for c in consts))
            message = f"missing required key `{tag}` in {_name(path)}; allowed `{tag}` values: {allowed}"
            return [self._at(path, message, key=True)]
        value = error.instance[tag]
        for index, const in enumerate(consts):
            if type(value) is type(const) and value == const:
                chosen = groups.get(index)
                if not chosen:
                    return [self._too_many(path, [])]
                return [problem for sub in chosen for problem in self.translate(sub)]
        return [self._enum_problem(path + (tag,), value, consts)]

    def _too_many(self, path: JsonPath, required_keys: list[str]) -> Problem:
        if required_keys:
            keys = _join([f"`{k}`" for k in required_keys], "and")
            return self._at(path, f"{_name(path)} may have only one of {keys}; remove the others", key=True)
        return self._at(path, f"{_name(path)} matches more than one of the allowed forms; make it match exactly one")


# --------------------------------------------------------------------------------------------------
# Small helpers


def _name(path: JsonPath) -> str:
    """How a message names the thing at ``path``: its key (with any list indices), not the whole path."""
    if not path:
        return "the top level"
    index = len(path) - 1
    while index >= 0 and isinstance(path[index], int):
        index -= 1
    base = str(path[index]) if index >= 0 else "item"
    return f"`{base}{''.join(f'[{i}]' for i in path[index + 1 :])}`"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`? " if close else ""


def _literal(value: Any) -> str:
    return _shorten(value) if isinstance(value, str) else json.dumps(value)


def _shorten(text: str, limit: int = _SHOW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(_shorten(value), ensure_ascii=False)}"
    return _kind(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for python_type, word in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(value, python_type):
            return word
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a value"


def _join(words: Sequence[str], conjunction: str) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _count(amount: int, unit: str) -> str:
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"


def _first_sentence(text: str, limit: int = 120) -> str:
    sentence = re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0]
    return _shorten(sentence, limit)


def _pointer(document: Any, pointer: str) -> Any:
    """Resolve a JSON Pointer (``/$defs/kernel``) inside ``document``; None if it leads nowhere."""
    node = document
    for token in pointer.split("/")[1:] if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _discriminator(branches: list[Any]) -> str | None:
    """The property every branch pins with ``const`` (e.g. ``kind``), if there is one."""
    if not branches or not all(isinstance(b, dict) and isinstance(b.get("properties"), dict) for b in branches):
        return None
    for name in branches[0]["properties"]:
        if all(isinstance(b["properties"].get(name), dict) and "const" in b["properties"][name] for b in branches):
            return name
    return None


def _required_only(branches: list[Any]) -> list[str]:
    """For ``anyOf: [{required: [max]}, {required: [min]}]``, the keys ``[max, min]``; else []."""
    plain = {"required", "description", "title"}
    if not branches or not all(isinstance(b, dict) and set(b) <= plain for b in branches):
        return []
    return _unique_list(key for branch in branches for key in branch.get("required", []))


def _wrong_type(errors: list[ValidationError], path: JsonPath) -> bool:
    return any(error.validator == "type" and tuple(error.absolute_path) == path for error in errors)


def _types_at(errors: list[ValidationError], path: JsonPath) -> list[str]:
    types: list[str] = []
    for error in errors:
        if error.validator == "type" and tuple(error.absolute_path) == path:
            value = error.validator_value
            types.extend([value] if isinstance(value, str) else value)
    return types


def _depth(errors: list[ValidationError]) -> int:
    return max((len(error.absolute_path) for error in errors), default=0)


def _paths_to(data: Any, target: Any, path: JsonPath) -> Iterator[JsonPath]:
    """Paths at which ``target`` itself (the same object, not an equal one) sits inside ``data``."""
    if data is target:
        yield path
        return
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, child in children:
        yield from _paths_to(child, target, path + (key,))


def _unique_list(items: Any) -> list[Any]:
    return list(dict.fromkeys(items))
