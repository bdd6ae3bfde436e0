"""Generate docs/contract.md from schemas/contract.schema.json, so the reference cannot drift from
the schema (a test checks the committed file is current). Run: python tools/gen_contract_docs.py"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

INTRO = """# Contract reference

A contract is a YAML file checked against `schemas/contract.schema.json` (print it with
`promote schema`). This page is generated from that schema by `tools/gen_contract_docs.py`.

- Unknown keys are errors at every level (with a "did you mean" suggestion), never ignored.
- Paths (model files, weights, data) are relative to the contract file, not the working directory.
- A model file (`model: path/to/model.py:build`) is imported with its own folder first on `sys.path`
  (removed again afterwards), so it can `import` a sibling module as `python model.py` could.
- `${VAR}` and `${VAR:-default}` in string values read environment variables after YAML parsing;
  a value that is exactly one `${...}` (unquoted) takes the YAML type of the substituted text, so
  `max: ${KL_MAX:-1e-3}` is a number. `$${` writes a literal `${`. An unset variable with no default
  is an error naming its line. Keys are never interpolated.
- Messages show the values `${NAME}` substituted (`cannot connect to http://127.0.0.1:8000/v1`, not
  `${PROMOTE_VLLM_URL}`), except secret ones; every URL has its `user:password@` part and the values
  of credential-like query parameters (`?api_key=***`) masked in messages and reports. Schema errors
  quote the raw `${...}` text. A secret-named variable's value (6 characters or more) is shown as
  `${NAME}` in messages. When the name looks secret (the one rule is in docs/cli.md "Secrets": it
  contains `TOKEN`, `KEY`, `SECRET`, `PASSWORD`, `PASSWD`, `PASSPHRASE` or `CREDENTIAL` in any case,
  or the word `PAT`), the value is also masked as `***` in reports, the job summary, the PR comment
  and step outputs, and so is the file or factory part of a `file:factory` value. That holds for
  such variables even when the contract does not use them (values of 6 characters or more;
  shorter ones would blank ordinary text). Reports keep other interpolated values (a report must
  name the candidate it tested), and only a secret-looking name masks the parts of a
  `file:factory` value: give a variable that holds a secret a secret's name.
- Clause ids must be unique across the whole contract.
- A `numerical` bound that can never fail is an error (exit 2, at its line): `max` at or above the top
  of the metric's range (`tv` max 1) or `min` at or below its bottom (`argmax_agree` min 0, `kl` min 0),
  because such a clause passes whatever the kernels do. The ranges are those of
  [calibration.md](calibration.md) (a `sum` has no top). A bound beyond the other end (`kl` max −1)
  fails always; that is loud, so it stays valid.
- Bound-chain consistency: `validate` and `check` warn (on stderr, once per run) about a
  `logit_osc`/`logit_drift` clause too loose to imply a sibling `tv`/`kl`/`abs_log_ratio` clause of
  the same statistic, or beyond the PPO clip budget of `numerical.implications.clip`. Each warning
  shows its id, `chain/<logit clause>/<clause>` or `clip/<logit clause>`; list it under
  `consistency: {ignore: [...]}` (top level, or under `numerical`) to acknowledge it. An id that
  matches no current warning is itself a warning.
- A contract must name at least one stage (`numerical`, `statistical`, `runtime`, `observability`).
  `reference` and `candidate` are required only with a stage that runs the kernels, `data` only with
  a stage that reads the eval set: a contract whose only stage is `observability` needs neither (a
  deploy-time check with the contract alone); a missing one is an error at the stage's key.
  This version evaluates all four sections (`numerical`, `statistical`, `runtime`, `observability`);
  a stage declared without an implementation would report its clauses as `error` (exit 3), never
  `pass`. The statistics behind `statistical` are in `docs/statistics.md`, `runtime` in
  `docs/runtime.md`, `observability` in `docs/observability.md`.

## Numbers

- Numbers are read as YAML 1.2 and JSON read them: `0.001`, `1e-3`, `1.0e6`, `-2E+5`, `.5` are all
  numbers, and so is the value of an unquoted `${VAR}` / `${VAR:-1e-3}` whose text is one. A quoted
  value (`max: "1e-3"`) is text, and a key that takes a number rejects it.
- Every number must be finite: `.nan`, `.inf`, `-.inf` (and anything beyond ±1.8e308, which reads
  as infinity) are errors at their line, in every key, because nothing can be compared with them.
  Leave a bound out instead of writing an infinite one.
- A key that takes an integer takes an integer literal: `resamples: 5000`, not `5e3` or `5000.0`.
- Ranges must be ordered: `min` ≤ `max` within a clause, and `reward_range: [a, b]` with a ≤ b.
- No string may contain a NUL character (`"\\0"`).

## Limits on sizes

Every integer key has a cap, far above real use and below what would exhaust memory or time (for
example, `quantiles` buckets and `resamples` replicates are held in memory):

"""


def _type(node: dict) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node and "type" not in node:
        return " or ".join(_type(branch) for branch in node["oneOf"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    return f"{kind}"


def _rows(node: dict, prefix: str, out: list[str], when: str = "") -> None:
    required = set(node.get("required", []))
    for key, prop in node.get("properties", {}).items():
        if key == "$schema":
            continue
        name = f"{prefix}{key}"
        label = f"`{name}`{when}"
        limits = [f"{k} {prop[k]}" for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum",
                                               "minItems", "pattern") if k in prop]
        text = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {label} | {'yes' if key in required else ''} | {_type(prop)}"
                   f"{' (' + '; '.join(limits) + ')' if limits else ''} | {text} |")
        for branch in prop.get("oneOf", []):
            if branch.get("type") == "object":
                kind = branch.get("properties", {}).get("kind", {}).get("const")
                _rows(branch, f"{name}.", out, f" (kind `{kind}`)" if kind else "")
        if prop.get("type") == "object":
            _rows(prop, f"{name}.", out)
        items = prop.get("items")
        if isinstance(items, dict) and items.get("type") == "object":
            _rows(items, f"{name}[].", out)


def _caps(node: dict, prefix: str, out: dict[str, int]) -> None:
    """Key → its `maximum`, for every integer key in the schema (kernel kinds share their keys)."""
    for key, prop in node.get("properties", {}).items():
        name = f"{prefix}{key}"
        if prop.get("type") == "integer" and "maximum" in prop:
            out.setdefault(name, prop["maximum"])
        for branch in prop.get("oneOf", []):
            _caps(branch, f"{name}.", out)
        _caps(prop, f"{name}.", out)
        if isinstance(prop.get("items"), dict):
            _caps(prop["items"], f"{name}[].", out)


def render(schema: dict) -> str:
    caps: dict[str, int] = {}
    _caps(schema, "", caps)
    lines = [INTRO.rstrip("\n"), "", "| Key | At most |", "|---|---|"]
    lines += [f"| `{key}` | {cap} |" for key, cap in caps.items()]
    lines += ["", "## Keys", "", "| Key | Required | Type | Meaning |", "|---|---|---|---|"]
    _rows(schema, "", lines)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    schema = json.loads((REPO / "schemas" / "contract.schema.json").read_text(encoding="utf-8"))
    (REPO / "docs" / "contract.md").write_text(render(schema), encoding="utf-8")
    print("wrote docs/contract.md")
