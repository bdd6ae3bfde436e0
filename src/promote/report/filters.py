"""Escaping and formatting filters for the report templates: plain functions, tested on their own.

Everything a template prints from the report (contract names, clause messages, slice values from
eval-set tags, commands) is untrusted text: it must not break a markdown table, open HTML, end a
code fence or a Mermaid string, or start a GitHub workflow command. Each filter handles one context.
"""

from __future__ import annotations

import hashlib
import html
import math
import re

from promote.judgement import margin
from promote.redact import redact
from promote.results import Bound, bounds_text, compared, format_value

_MD_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]#|~])")
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def one_line(value: object) -> str:
    """Newlines and control characters become spaces, so data can never start a line of its own
    (a line starting with ``::`` is a workflow command in a GitHub Actions log)."""
    return _CONTROL.sub(" ", str(value)).replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def no_mentions(value: object) -> str:
    """``@name`` and ``@org/team`` with a zero-width space after the ``@``, so GitHub does not link and
    notify the user or team; the text still reads the same.

    Why a zero-width space and not a code span: it works inside any markdown context (a table cell, a
    heading, a list item, text already escaped) without changing how the text looks or breaking the
    escaping around it, and it is what release-note bots use for the same purpose. GitHub's mention
    parser needs a letter or digit right after the ``@``, which the invisible character denies.
    """
    return _MENTION.sub("@\u200b", str(value))


def md_text(value: object) -> str:
    """Escape text for inline markdown (headings, list items, table cells): one line, no HTML, no
    emphasis, links, code spans, table pipes or ``@mentions``."""
    text = html.escape(one_line(value), quote=False)
    return no_mentions(_MD_INLINE_SPECIALS.sub(r"\\\1", text))


def md_cell(value: object) -> str:
    """Escape text for one markdown table cell (the same rules: ``|`` is among the escaped)."""
    return md_text(value)


def md_code(value: object, cell: bool = True) -> str:
    """``value`` as one whole markdown code span: delimited by a backtick run longer than any inside it
    (a backslash does not escape inside a code span, so ``\\``` could not), padded when it starts or
    ends with a backtick, on one line; in a table cell (``cell``) ``|`` is escaped, which GFM undoes
    inside the span. Code spans show HTML, emphasis, links and ``@mentions`` as typed."""
    text = one_line(value)
    if cell:
        text = text.replace("|", "\\|")
    if not text.strip():
        return "` `"
    ticks = fence(text, 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def truncate(value: object, limit: int) -> str:
    """At most ``limit`` characters, marking the cut with an ellipsis (used on cell text only)."""
    text = str(value)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def fence(text: object, minimum: int = 3) -> str:
    """A backtick fence longer than any backtick run inside ``text``, so the content cannot close it."""
    runs = [len(m) for m in re.findall(r"`+", str(text))]
    return "`" * max(minimum, max(runs, default=0) + 1)


def bound_text(bounds: list[Bound]) -> str:
    """``≤ 0.001`` / ``≥ 0.98`` (comma-separated when a clause sets both)."""
    return bounds_text(bounds) or "—"


def kernel_label(spec: dict) -> str:
    """A kernel as the report header names it: kind, precision, and what runs, so a reader sees which
    model file and factory, .onnx file or records were compared (``torch bf16 (model.py:build)``)."""
    words = [str(spec.get("kind", "?"))]
    if spec.get("precision"):
        words.append(str(spec["precision"]))
    what = spec.get("model") or spec.get("path")
    return " ".join(words) + (f" ({what})" if what else "")


def compared_cells(observed: float | None, bounds: list[Bound]) -> tuple[str, str]:
    """Observed and bound cells, with digits enough to show why the clause passed or failed
    (results.compared); ``—`` for a clause without bounds."""
    shown, limits = compared(observed, bounds)
    return shown, limits or "—"


#: The relative margin is shown only when the bound is at least this fraction of the observed value.
RELATIVE_MARGIN_MIN_BOUND = 0.1


def relative_margin(observed: float | None, bounds: list[Bound]) -> float | None:
    """Margin as a fraction of the bound, ``margin / |bound|``, for a clause with one non-zero bound
    whose observed value is within an order of magnitude of it (``|bound| ≥ 0.1·|observed|``).

    Near a bound of 0 the ratio explodes (0.09 observed against ≤ 1e-5 reads ``-9032%``) and says
    nothing the absolute margin does not, so it is None there.
    """
    value = margin(observed, bounds)
    if value is None or observed is None or len(bounds) != 1 or not math.isfinite(value):
        return None
    bound = bounds[0].value
    if bound == 0 or not math.isfinite(bound) or abs(bound) < RELATIVE_MARGIN_MIN_BOUND * abs(observed):
        return None
    return value / abs(bound)


def margin_text(observed: float | None, bounds: list[Bound]) -> str:
    """Margin with its sign and, where it reads sensibly (``relative_margin``), relative to the
    bound: ``-0.0002 (-20%)``; ``-0.09032`` alone for a bound near 0."""
    value = margin(observed, bounds)
    if value is None:
        return "—"
    text = ("+" if value > 0 else "") + format_value(value)
    relative = relative_margin(observed, bounds)
    if relative is not None:
        text += f" ({relative:+.0%})"
    return text


def mermaid_label(value: object, limit: int = 24) -> str:
    """A Mermaid string literal's content: no quotes, backslashes, backticks, brackets or HTML."""
    text = re.sub(r'["\\`<>\[\]{};]', "'", one_line(value)).strip()
    return no_mentions(truncate(text, limit)) or "?"


def mermaid_number(value: float) -> str:
    """A plain decimal (no exponent, which xychart-beta does not parse)."""
    text = f"{value:.12f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def marker_key(contract_name: str) -> str:
    """A file- and HTML-comment-safe key for a contract: readable slug plus a hash of the exact name,
    so two names that slug alike do not collide and no name (``-->``, newlines) can escape. Built from
    the masked name (promote.redact), so a secret in the name reaches neither a file name nor a marker."""
    contract_name = redact(contract_name)
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9_.-]+", "-", contract_name)).strip("-.")[:60] or "contract"
    return f"{slug}-{hashlib.sha256(contract_name.encode('utf-8')).hexdigest()[:8]}"


def marker(contract_name: str) -> str:
    """The hidden comment that identifies this contract's sticky PR comment."""
    return f"<!-- promote:report key={marker_key(contract_name)} -->"


MARKER_PATTERN = re.compile(r"<!-- promote:report key=[A-Za-z0-9_.-]+ -->")


_ARTIFACT_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]+)?/[A-Za-z0-9._~%/+-]*")


def artifact_url(url: str | None) -> str | None:
    """``url`` when it is a plain https URL that cannot break out of a markdown link (no spaces,
    parentheses, brackets, quotes or markup), else None: the link is then left out, never mangled."""
    if url and _ARTIFACT_URL.fullmatch(url):
        return url
    return None
