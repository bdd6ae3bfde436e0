"""Snapshot files in the Prometheus text format or OpenMetrics, read with prometheus_client's parser.

The embedded default source of stage 4: no server needed, so a pull request (or a deploy job with
the runtime stage's ``--metrics-out``) can sign off on the same selectors a live Prometheus would
answer. A sample without a timestamp is dated by the file's modification time — that is when the
snapshot was taken — so ``max_age`` means the same thing on both sources.

prometheus_client's parser raises on the first bad line without saying which; a file that does not
parse is re-read line by line to name the first line that fails on its own, so the message points
at the line to fix (a JSON or CSV file handed in by mistake fails at line 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from promote.bounded import MIB, read_regular
from promote.errors import UsageError
from promote.observability.series import Series

MAX_SNAPSHOT_BYTES = 256 * MIB  # a /metrics page is KBs to a few MB


def _families(text: str, openmetrics: bool) -> Iterable:
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families(text)


def _is_openmetrics(text: str) -> bool:
    return text.rstrip().endswith("# EOF")


def _bad_line(text: str, openmetrics: bool) -> int | None:
    """1-based number of the first line that does not parse alone (None: only in context)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.strip() == "# EOF":
            continue
        try:
            list(_families(line + ("\n# EOF\n" if openmetrics else "\n"), openmetrics))
        except Exception:  # noqa: BLE001 - the parser raises ValueError and, on some input, others
            return number
    return None


def read_snapshot(path: str, display: str) -> list[Series]:
    """Every sample of one snapshot file as a one-sample Series (``__name__`` among its labels)."""
    try:
        raw = read_regular(path, MAX_SNAPSHOT_BYTES)  # a FIFO would block, /dev/zero fill memory
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise UsageError(f"metrics snapshot `{display}` cannot be read ({exc.strerror or exc}); "
                         "`observability.source.path` is relative to the contract file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UsageError(f"{display}:{line}: not UTF-8 text, so not an exposition-format snapshot") from None
    openmetrics = _is_openmetrics(text)
    fmt = "OpenMetrics" if openmetrics else "Prometheus text format"
    try:
        families = list(_families(text, openmetrics))
    except Exception as exc:  # noqa: BLE001 - see _bad_line
        line = _bad_line(text, openmetrics)
        where = f"{display}:{line}" if line else display
        shown = text.splitlines()[line - 1][:120] if line else ""
        raise UsageError(f"{where}: not a valid {fmt} snapshot ({exc})" + (f": `{shown}`" if shown else "") +
                         "; expected lines like `name{label=\"value\"} 1.5` and `# TYPE name counter` (write it "
                         "with prometheus_client's generate_latest)") from None
    out: list[Series] = []
    seen: set[tuple] = set()
    for family in families:
        for sample in family.samples:
            labels = {"__name__": sample.name, **sample.labels}
            key = tuple(sorted(labels.items()))
            if key in seen:
                raise UsageError(f"{display}: series {sample.name}{Series(labels).label_text()} appears twice")
            seen.add(key)
            when = float(sample.timestamp) if sample.timestamp is not None else mtime
            out.append(Series(labels, [(when, float(sample.value))]))
    return out


def read_snapshots(paths: tuple[str, ...], displays: tuple[str, ...]) -> list[Series]:
    """All files as one set of series; a series present in two files is an error (which value wins?)."""
    out: list[Series] = []
    origin: dict[tuple, str] = {}
    for path, display in zip(paths, displays, strict=True):
        for series in read_snapshot(path, display):
            key = tuple(sorted(series.labels.items()))
            if key in origin:
                raise UsageError(f"series {series.name}{series.label_text()} is in both `{origin[key]}` and "
                                 f"`{display}`; give each snapshot distinct labels (e.g. version=\"canary\")")
            origin[key] = display
            out.append(series)
    return out
