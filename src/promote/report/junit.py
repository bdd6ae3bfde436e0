"""JUnit XML: one testcase per clause (and slice), for GitLab ``reports:junit``, Jenkins and
dorny/test-reporter.

Mapping: fail and vacuous → ``<failure>`` (vacuous evidence is never a pass), error → ``<error>``,
skipped and inconclusive → ``<skipped>`` with the reason, warn → passed with a ``<system-out>`` note.
The action the policy took is in every testcase's ``<system-out>``. Built with xml.etree, so text is
escaped by the library; characters XML 1.0 cannot carry at all are replaced first.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from promote.report.filters import bound_text
from promote.report.model import Report
from promote.report.view import build_view

_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
FAILURE = ("fail", "vacuous")
SKIPPED = ("skipped", "inconclusive")


def _x(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def to_junit(report: Report) -> str:
    """The report as a JUnit XML document (UTF-8, with declaration)."""
    view = build_view(report)
    rows = view.attention + view.passing
    order = {id(c): i for i, c in enumerate(report.clauses())}
    rows.sort(key=lambda r: order[id(r.clause)])
    counts = {"tests": len(rows), "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.Element("testsuite", name=_x(f"promote.{report.contract['name']}"),
                       timestamp=_x(report.started_at), time=f"{report.duration_s:.3f}")
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", report.verdict), ("exit_code", report.exit_code),
                        ("contract_sha256", report.contract["sha256"]),
                        ("report_sha256", view.provenance["report_sha256"]),
                        ("commit", report.commit or ""), ("promote_version", report.tool_version)):
        ET.SubElement(props, "property", name=name, value=_x(value))
    for row in rows:
        c = row.clause
        name = c.id if c.slice is None else f"{c.id}[{c.slice}]"
        case = ET.SubElement(suite, "testcase", classname=_x(f"promote.{c.stage}"), name=_x(name), time="0")
        observed = c.observed if c.observed is not None else "n/a"
        detail = f"{c.message}\nobserved: {observed}; bound: {bound_text(c.bounds)}"
        if c.status in FAILURE:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=_x(c.message), type=c.status).text = _x(detail)
        elif c.status in ("error", "invalid"):  # invalid: not judged, the identity check found a mismatch
            counts["errors"] += 1
            ET.SubElement(case, "error", message=_x(c.message), type=c.status).text = _x(detail)
        elif c.status in SKIPPED:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_x(f"{c.status}: {c.message}"))
        out = [f"status: {c.status}"]
        if row.action is not None:
            out.append(f"action: {row.action.action} ({row.action.reason})")
        if c.status == "warn":
            out.append(f"warning: {c.message}")
        ET.SubElement(case, "system-out").text = _x("\n".join(out))
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites", name="promote", **{k: str(v) for k, v in counts.items()})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
