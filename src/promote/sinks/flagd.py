"""The ``flagd`` sink: the flag that picks the model, in an OpenFeature flagd flag file.

flagd re-reads its flag file when it changes (``--uri file:...``), and a flag's ``targeting`` decides the
variant per evaluation; with no targeting (or none matching) ``defaultVariant`` is used. The sink owns one
flag's ``defaultVariant`` and ``targeting``: the candidate's share ``w`` becomes the fractional split
``{"fractional": [[reference, 100 - w], [candidate, w]]}`` (flagd buckets each evaluation context by a hash of
the flag key and its ``targetingKey``, or of ``bucket_by``), with ``defaultVariant`` the reference (the
candidate when ``w`` is 100). The flag's ``state``, its variants, its metadata and every other flag are
left as they are. The whole file is validated against flagd's published schema (flagd-schemas
json-schema-v0.2.15, ``flagd.json``) before it is rewritten atomically, so flagd never reads half a file or
a file it would reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promote.sinks.base import BaseSink, TargetError
from promote.sinks.kube import FileObject
from promote.sinks.options import Options

KEYS = {
    "file": "the flag file flagd reads (JSON, or YAML), rewritten atomically",
    "flag": "the key of the flag that picks the model (flags.<key>)",
    "candidate": "the candidate's variant name in that flag's `variants`",
    "reference": "the reference's variant name in that flag's `variants`",
    "bucket_by": "the evaluation-context attribute fractional bucketing hashes (optional; flagd's default: "
                 "the flag key and targetingKey)",
}


def build(options: Mapping[str, Any], where: str) -> FlagdSink:
    """The ``SinkFactory`` of ``flagd``."""
    opts = Options("flagd", options, where, KEYS)
    names = {key: str(opts.text(key)) for key in ("file", "flag", "candidate", "reference")}
    if names["candidate"] == names["reference"]:
        raise opts.fail("reference", "must name another variant than `candidate`")
    return FlagdSink(FileObject(Path(names["file"]), "flagd"), names["flag"], names["candidate"], names["reference"],
                     opts.text("bucket_by", required=False))


class FlagdSink(BaseSink):
    name = "flagd"

    def __init__(self, target: FileObject, flag: str, candidate: str, reference: str, bucket_by: str | None) -> None:
        self.target, self.flag, self.candidate, self.reference, self.bucket_by = \
            target, flag, candidate, reference, bucket_by
        self._document: dict[str, Any] | None = None

    def _flag(self, document: dict[str, Any]) -> dict[str, Any]:
        flags = document.get("flags")
        if not isinstance(flags, dict):
            raise TargetError(f"{self.target.describe()}: `flags` is not a map of flag key to flag (the array form "
                              "is not supported by this sink)")
        flag = flags.get(self.flag)
        if not isinstance(flag, dict):
            raise TargetError(f"{self.target.describe()}: no flag {self.flag!r} in `flags`")
        variants = flag.get("variants") if isinstance(flag.get("variants"), dict) else {}
        missing = [v for v in (self.reference, self.candidate) if v not in variants]
        if missing:
            raise TargetError(f"{self.target.describe()}: flag {self.flag!r} has no variant "
                              f"{' or '.join(repr(m) for m in missing)}")
        return flag

    def state(self) -> dict[str, Any]:
        document = self.target.get()
        self._document = document
        flag = self._flag(document)
        share = self.share(flag)
        # other targeting is shown by kind only: a file's rules can be nested deeper than a log should carry
        targeting = flag.get("targeting") if share is not None else "(targeting this sink does not read)"
        return {"file": self.target.describe(), "flag": self.flag, "state": flag.get("state"),
                "defaultVariant": flag.get("defaultVariant"), "targeting": targeting, "candidate_weight": share}

    def share(self, flag: dict[str, Any]) -> float | None:
        """The candidate's share of evaluations (0..100) the flag gives now; None when its targeting is not a
        plain fractional split this sink can read."""
        targeting = flag.get("targeting")
        if not targeting:
            return 100.0 if flag.get("defaultVariant") == self.candidate else 0.0
        split = targeting.get("fractional") if isinstance(targeting, dict) and len(targeting) == 1 else None
        if not isinstance(split, list):
            return None
        pairs = [e for e in split if isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                 and isinstance(e[1], int) and not isinstance(e[1], bool)]
        total = sum(weight for _, weight in pairs)
        if not total:
            return None
        return 100.0 * sum(weight for name, weight in pairs if name == self.candidate) / total

    def desired(self, want: int) -> dict[str, Any]:
        split: list[Any] = [[self.reference, 100 - want], [self.candidate, want]]
        if self.bucket_by:
            split.insert(0, {"var": self.bucket_by})
        return {"defaultVariant": self.candidate if want == 100 else self.reference, "targeting": {"fractional": split}}

    def satisfied(self, state: dict[str, Any], want: int) -> bool:
        desired = self.desired(want)
        return all(state.get(key) == value for key, value in desired.items())

    def describe(self, state: dict[str, Any], want: int) -> str:
        return (f"rewrite {self.target.describe()} flag {self.flag!r}: {self.candidate} {want}%, "
                f"{self.reference} {100 - want}% (now {state.get('candidate_weight')}% to {self.candidate})")

    def enact(self, state: dict[str, Any], want: int, decision: object) -> None:
        document = self._document if self._document is not None else self.target.get()
        flags = dict(document["flags"])
        flags[self.flag] = {**self._flag(document), **self.desired(want)}
        self.target.replace({**document, "flags": flags})
