"""Translate jsonschema's errors into one line each that names the key and says what would be right.

Why this module exists: jsonschema reports problems in terms of its own internals (``'x' is not valid
under any of the given schemas``), but a person editing a contract needs the key and the fix. Each
handler here answers one JSON Schema keyword; for ``oneOf`` / ``anyOf`` it picks the branch the value
was meant to match (by a ``const`` discriminator such as ``kind``, or by the fewest errors) and reports
in terms of that branch. It knows nothing about the contract's schema: the schema is passed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from jsonschema.exceptions import ValidationError

from promote.contract.problems import JsonPath, LoadedDocument, Problem
from promote.contract.wording import (
    count_of,
    describe,
    did_you_mean,
    first_sentence,
    join_words,
    key_name,
    kind_of,
    literal,
    shorten,
)

__all__ = ["Translator"]

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


class Translator:
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
            "dependentRequired": self._dependent_required,
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
            return f"{kind_of(value)} from `{shorten(raw)}`"
        return describe(value)

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
        choices = ", ".join(sorted(literal(choice) for choice in allowed))
        name = key_name(path)
        if path in self.doc.interpolated:
            head, hint = f"the value from `{shorten(self.doc.interpolated[path])}`", ""
        elif isinstance(value, (dict, list)) or value is None:
            return self._at(path, f"{name} must be one of: {choices}; got {describe(value)}")
        else:
            head = f"`{literal(value)}`"
            hint = did_you_mean(value, [c for c in allowed if isinstance(c, str)]) if isinstance(value, str) else ""
        return self._at(path, f"{head} is not an allowed value for {name}; {hint}allowed: {choices}")

    def _type_problem(self, path: JsonPath, value: Any, expected: Sequence[str]) -> Problem:
        words = join_words([_TYPE_WORDS.get(t, t) for t in expected], "or")
        message = f"{key_name(path)} must be {words}, got {self._got(path, value)}"
        if "integer" in expected and isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
            message += f"; write it as a whole number without a point or exponent: {int(value)}"
        return self._at(path, message)

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
            hint = did_you_mean(key, allowed)
            listing = f"allowed keys: {', '.join(allowed)}" if allowed else "no keys are allowed here"
            problems.append(self._at(path + (key,), f"unknown key `{key}`; {hint}{listing}", key=True))
        return problems

    def _enum(self, error: ValidationError) -> list[Problem]:
        return [self._enum_problem(tuple(error.absolute_path), error.instance, error.validator_value)]

    def _const(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        expected = literal(error.validator_value)
        return [self._at(path, f"{key_name(path)} must be `{expected}`, got {self._got(path, error.instance)}")]

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
        return [self._at(path, f"missing required key `{key}` in {key_name(path)}", key=True) for key in missing]

    def _dependent_required(self, error: ValidationError) -> list[Problem]:
        """``numerical`` without ``reference``: placed at the section that needs the key (the missing key
        has no line), naming the key and why the section needs it (sections.py's needs)."""
        if not isinstance(error.instance, dict):
            return []
        path, have = tuple(error.absolute_path), error.instance
        why = {"data": "reads the eval set"}
        return [self._at((*path, section), f"missing required key `{key}` in {key_name(path)}: stage section "
                         f"`{section}` {why.get(key, 'runs the reference and candidate kernels')}; add `{key}` or "
                         f"remove `{section}` (only `observability` runs without kernels and data)", key=True)
                for section, needed in error.validator_value.items() if section in have
                for key in needed if key not in have]

    def _bound(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        words = _BOUND_WORDS[error.validator]
        limit, got = literal(error.validator_value), self._got(path, error.instance)
        message = f"{key_name(path)} must be {words} {limit}, got {got}"
        return [self._at(path, message)]

    def _multiple_of(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        step, got = literal(error.validator_value), self._got(path, error.instance)
        message = f"{key_name(path)} must be a multiple of {step}, got {got}"
        return [self._at(path, message)]

    def _size(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        bound = "at least" if error.validator.startswith("min") else "at most"
        unit = {"Items": "item", "Length": "character", "Properties": "key"}[error.validator[3:]]
        amount = count_of(error.validator_value, unit)
        if unit == "character":
            message = f"{key_name(path)} must be {bound} {amount} long, got {self._got(path, error.instance)}"
        else:
            message = f"{key_name(path)} must have {bound} {amount}, got {len(error.instance)}"
        return [self._at(path, message)]

    def _pattern(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        got = self._got(path, error.instance)
        message = f"{key_name(path)} must match the pattern `{error.validator_value}`, got {got}"
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        if isinstance(description, str) and description:
            message += f"; expected: {first_sentence(description)}"
        return [self._at(path, message)]

    def _format(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        message = f"{key_name(path)} must be a valid {error.validator_value}, got {self._got(path, error.instance)}"
        return [self._at(path, message)]

    def _unique(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        seen: dict[str, int] = {}
        problems = []
        for index, item in enumerate(error.instance):
            fingerprint = json.dumps(item, sort_keys=True, default=str)
            if fingerprint in seen:
                first = key_name(path + (seen[fingerprint],))
                item = key_name(path + (index,))
                message = f"{item} repeats {first}; items in {key_name(path)} must be unique, remove one"
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
        return [self._at(path, f"{key_name(path)} is not allowed here; remove it", key=True)]

    def _generic(self, error: ValidationError) -> list[Problem]:
        path = tuple(error.absolute_path)
        if any(p[: len(path)] == path for p in self.doc.interpolated):
            # jsonschema's message quotes the value, which may have come from the environment.
            return [self._at(path, f"{key_name(path)} is not valid (fails `{error.validator}`)")]
        return [self._at(path, f"{key_name(path)} is not valid: {shorten(error.message, 160)}")]

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
            keys = join_words([f"`{k}`" for k in required_keys], "or")
            return [self._at(path, f"missing required key {keys} in {key_name(path)}", key=True)]
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
            allowed = ", ".join(sorted(literal(c) for c in consts))
            message = f"missing required key `{tag}` in {key_name(path)}; allowed `{tag}` values: {allowed}"
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
            keys = join_words([f"`{k}`" for k in required_keys], "and")
            return self._at(path, f"{key_name(path)} may have only one of {keys}; remove the others", key=True)
        return self._at(path, f"{key_name(path)} matches more than one of the allowed forms; make it match exactly one")


# --------------------------------------------------------------------------------------------------
# Reading the schema and jsonschema's errors


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
