"""With hundreds of slice tests the slice stage keeps its power (issue 13, item 5).

A contract with the tiny example's slices plus 40-quantile rarity, entropy, position and length
families judges over 200 items. The Cyrillic fault's slice mean KL lies tens of standard errors
beyond its bound; a p-value floored at 1/(resamples + 1) could never survive Holm over that many
tests, so it came out `inconclusive`. It must fail, the honest bf16 candidate must fail no slice,
and every failing slice's multiplicity-adjusted interval must lie beyond its bound.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"


def _contract(tmp: Path) -> Path:
    for name in ("model.py", "faults.py", "weights.safetensors", "eval.jsonl"):
        (tmp / name).symlink_to(EXAMPLE / name)
    doc = yaml.safe_load((EXAMPLE / "slices.yaml").read_text())
    doc.pop("numerical")
    doc.pop("escalation")
    doc["slices"] += [{"name": f"{key}40", "by": key, "quantiles": 40}
                      for key in ("token_frequency", "entropy", "position", "length")]
    many = ["script", "lang", "length", "position", "token_frequency40", "entropy40", "position40", "length40"]
    doc["statistical"].update(min_samples=5, clauses=[
        {"id": "slice-kl", "metric": "kl", "stat": "mean", "max": 1.0e-3, "per_slice": True, "slices": many},
        {"id": "worst-kl", "metric": "kl", "stat": "max_over_slices", "max": 1.0e-3,
         "slices": ["rarity", "entropy", "script_len", "token_frequency40"]},
        {"id": "acc-drop", "metric": "accuracy", "max_drop": 0.01, "per_slice": True, "slices": ["script"]},
    ])
    path = tmp / "many.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    return _contract(tmp_path_factory.mktemp("many"))


@pytest.fixture(scope="module")
def faulty(many):
    return _slices(many, "faults.py:build_cyrillic_fault")


def _slices(path: Path, candidate: str | None):
    env = {"PROMOTE_CANDIDATE": candidate} if candidate else {}
    result = CliRunner().invoke(cli, ["check", str(path), "--format", "json"], env=env, catch_exceptions=False)
    report = json.loads(result.stdout)
    (stage,) = [s for s in report["stages"] if s["name"] == "slices"]
    return stage


def test_many_slice_tests_still_fail_the_cyrillic_fault(faulty):
    stage = faulty
    assert stage["details"]["tests_corrected"] >= 200
    by = {(c["id"], c["slice"]): c for c in stage["clauses"]}
    for label in ("script=cyrillic", "lang=ru", "lang=uk"):
        clause = by[("slice-kl", label)]
        assert clause["status"] == "fail", clause["message"]
        assert clause["evidence"]["p_fail_adjusted"] <= 0.05
        assert clause["evidence"]["p_fail"] < 1 / (stage["details"]["resamples"] + 1)  # not floored
    for clause in stage["clauses"]:
        ev = clause["evidence"]
        if "ci_adjusted" not in ev:
            continue
        adjusted_beyond = ev["ci_adjusted"][0] > 1.0e-3 if clause["id"] != "acc-drop" else ev["ci_adjusted"][1] < -0.01
        # the simultaneous interval and the adjusted p-value never disagree
        assert adjusted_beyond == (ev["p_fail_adjusted"] <= 0.05), clause["message"]
        assert (clause["status"] == "fail") == adjusted_beyond, clause["message"]


def test_many_slice_tests_honest_bf16_fails_no_slice(many):
    stage = _slices(many, None)
    assert stage["details"]["tests_corrected"] >= 200
    assert [c["message"] for c in stage["clauses"] if c["status"] == "fail"] == []


def test_a_slice_has_one_interval_whatever_clause_asks(faulty):
    stage = faulty
    by = {(c["id"], c["slice"]): c for c in stage["clauses"]}
    worst = next(c for c in stage["clauses"] if c["id"] == "worst-kl")
    cyr = by[("slice-kl", "script=cyrillic")]
    family = next(f for f in stage["details"]["families"] if f["name"] == "script")
    summary = next(s for s in family["slices"] if s["label"] == "script=cyrillic")["metrics"]["kl"]
    assert summary["ci"] == cyr["evidence"]["ci"]  # the descriptive summary reuses the clause's resampling
    assert worst["evidence"]["slices"]  # the worst-slice clause judged its slices from the same cache
