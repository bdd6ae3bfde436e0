"""The schemas the sinks validate against are the published ones, unedited (schemas/sinks/SOURCES.md), and they
accept the projects' own examples and refuse what they should."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from promote.sinks.schemas import problems

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "sinks"


def test_the_shipped_schemas_are_the_recorded_ones():
    recorded = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.json)$",
                                                                   (SCHEMAS / "SOURCES.md").read_text(), re.MULTILINE))
    shipped = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SCHEMAS.glob("*.json")}
    assert recorded == shipped and len(shipped) == 5


def test_flagds_own_examples_validate_and_its_bad_weights_do_not():
    good = {"flags": {"m": {"state": "ENABLED", "variants": {"a": "x", "b": "y"}, "defaultVariant": "a",
                            "targeting": {"fractional": [{"var": "email"}, ["a", 50], ["b", 50]]}}}}
    assert problems("flagd", good) == []
    for weight in (-1, 1.5, "50"):
        bad = {"flags": {"m": {**good["flags"]["m"], "targeting": {"fractional": [["a", weight], ["b", 50]]}}}}
        assert problems("flagd", bad), weight


def test_a_kubernetes_object_of_another_kind_is_named():
    found = problems("httproute", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}})
    assert found and "it is not a HTTPRoute" in found[0]


CORPUS = Path(__file__).resolve().parent / "fixtures" / "flagd-schemas"


def test_the_flagd_validator_agrees_with_flagd_schemas_own_test_corpus():
    """Positive files validate, negative ones do not. The one exception is by design: flags as an array is
    negative for providers' ``flags.json`` but valid for the daemon's ``flagd.json``, which the sink uses."""
    import json

    verdicts = {str(p.relative_to(CORPUS)): not problems("flagd", json.loads(p.read_text()))
                for p in sorted(CORPUS.rglob("*.json"))}
    assert len(verdicts) == 20
    for name, valid in verdicts.items():
        expected = "/positive/" in name or name == "flags/negative/with-array-flags.json"
        assert valid == expected, name


EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "crd-examples"


def test_the_crd_schemas_accept_every_published_example_and_refuse_a_broken_weight():
    """Every HTTPRoute of Gateway API v1.6.1's examples/standard (48) and every Rollout of Argo Rollouts v1.9.1's
    examples (21) validates; a negative weight does not."""
    import copy

    import yaml

    for schema, name, count in (("httproute", "httproutes.yaml", 48), ("rollout", "rollouts.yaml", 21)):
        documents = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
        assert len(documents) == count
        assert {i: problems(schema, d) for i, d in enumerate(documents) if problems(schema, d)} == {}
    route = next(d for d in yaml.safe_load_all((EXAMPLES / "httproutes.yaml").read_text())
                 if d and any("backendRefs" in r for r in d["spec"].get("rules", [])))
    broken = copy.deepcopy(route)
    next(r for r in broken["spec"]["rules"] if "backendRefs" in r)["backendRefs"][0]["weight"] = -1
    assert any("less than the minimum of 0" in p for p in problems("httproute", broken))
