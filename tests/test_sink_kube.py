"""The ``httproute`` and ``argo-abort`` sinks: JSON merge patches to a Kubernetes-API-shaped server or a file."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess

import pytest
import yaml

from promote.errors import UsageError
from promote.sinks.api import SINKS
from promote.sinks.base import TargetError
from tests.kube_api import KubeApi
from tests.sink_support import decision

ROUTE_PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/serving/httproutes/llm"
ROLLOUT_PATH = "/apis/argoproj.io/v1alpha1/namespaces/serving/rollouts/llm"
TOKEN = "k8s-test-token-0123456789"
ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "llm", "namespace": "serving"},
    "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
         "backendRefs": [{"name": "llm-reference", "port": 8000, "weight": 50},
                         {"name": "llm-candidate", "port": 8000, "weight": 50}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/health"}}],
         "backendRefs": [{"name": "llm-reference", "port": 8000}]}]},
}
ROLLOUT = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "llm", "namespace": "serving"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "llm"}},
             "template": {"metadata": {"labels": {"app": "llm"}},
                          "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0"}]}},
             "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
    "status": {"phase": "Paused", "currentStepIndex": 1},
}


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    server = KubeApi({ROUTE_PATH: ROUTE, ROLLOUT_PATH: ROLLOUT}, token=TOKEN)
    yield server
    server.close()


def route_sink(api: KubeApi, **options):
    return SINKS.get("httproute")({"url": api.url(ROUTE_PATH), "token_env": "K8S_TOKEN", "candidate": "llm-candidate",
                                   "reference": "llm-reference", **options}, "--sink httproute")


def argo_sink(api: KubeApi, **options):
    return SINKS.get("argo-abort")({"url": api.url(ROLLOUT_PATH), "token_env": "K8S_TOKEN", **options},
                                   "--sink argo-abort")


def patches(api: KubeApi) -> list[dict]:
    return [r for r in api.requests if r["method"] == "PATCH"]


def refs(obj: dict, rule: int = 0) -> dict:
    return {b["name"]: b.get("weight") for b in obj["spec"]["rules"][rule]["backendRefs"]}


# -- httproute over the API -------------------------------------------------------------------------


def test_route_back_patches_the_weights_and_reads_them_back(api):
    result = route_sink(api).apply(decision("route_back"))
    assert (result.ok, result.changed, result.dry_run) == (True, True, False), result.message
    assert result.read_back["weights"] == {"0": {"llm-candidate": 0, "llm-reference": 100}}
    stored = api.objects[ROUTE_PATH]
    assert refs(stored) == {"llm-reference": 100, "llm-candidate": 0}
    assert refs(stored, 1) == {"llm-reference": None}  # the rule without the candidate is untouched
    assert stored["spec"]["rules"][0]["matches"] == ROUTE["spec"]["rules"][0]["matches"]
    assert stored["metadata"]["resourceVersion"] == "2" == result.read_back["resourceVersion"]
    (patch,) = patches(api)
    assert patch == {"method": "PATCH", "path": ROUTE_PATH, "authorized": True,
                     "content_type": "application/merge-patch+json"}


def test_the_same_decision_twice_sends_one_patch(api):
    first, second = route_sink(api).apply(decision("route_back")), route_sink(api).apply(decision("route_back"))
    assert first.changed and (second.ok, second.changed) == (True, False)
    assert len(patches(api)) == 1 and api.objects[ROUTE_PATH]["metadata"]["resourceVersion"] == "2"


def test_restore_and_promote_set_the_canary_weight(api):
    route_sink(api).apply(decision("route_back"))
    restored = route_sink(api).apply(decision("restore", 30))
    assert restored.ok and refs(api.objects[ROUTE_PATH]) == {"llm-reference": 70, "llm-candidate": 30}
    promoted = route_sink(api).apply(decision("promote"))
    assert promoted.ok and refs(api.objects[ROUTE_PATH]) == {"llm-reference": 0, "llm-candidate": 100}


def test_dry_run_and_hold_send_no_patch_and_read_back(api):
    dry = route_sink(api).apply(decision("route_back"), dry_run=True)
    hold = route_sink(api).apply(decision("hold"))
    assert (dry.ok, dry.dry_run, dry.changed) == (True, True, False)
    assert "would patch" in dry.message and "llm-candidate weight -> 0" in dry.message
    assert dry.read_back["weights"]["0"] == {"llm-candidate": 50, "llm-reference": 50}
    assert (hold.ok, hold.changed) == (True, False) and hold.read_back == dry.read_back
    assert patches(api) == [] and api.objects[ROUTE_PATH] == {**ROUTE, "metadata": {**ROUTE["metadata"],
                                                                                    "resourceVersion": "1"}}


def test_the_token_goes_to_the_api_and_never_into_a_result(api):
    sink = route_sink(api)
    result = sink.apply(decision("route_back"))
    assert all(r["authorized"] for r in api.requests)
    assert TOKEN not in json.dumps(result.to_json()) + repr(sink) + repr(sink.target)
    api.token = "another-token-value"
    refused = route_sink(api).apply(decision("restore"))
    assert not refused.ok and "401" in refused.message and TOKEN not in json.dumps(refused.to_json())


@pytest.mark.parametrize(("fail", "words"), [(409, "409 Conflict"), (422, "422"), (500, "injected failure")])
def test_a_refused_patch_is_ok_false(api, fail, words):
    api.fail_next = fail
    result = route_sink(api).apply(decision("route_back"))
    assert (result.ok, result.changed) == (False, False) and words in result.message
    assert result.read_back["weights"]["0"] == {"llm-candidate": 50, "llm-reference": 50}


def test_a_concurrent_edit_is_a_conflict_not_overwritten(api):
    sink = route_sink(api)
    before = sink.state()
    api.objects[ROUTE_PATH]["metadata"]["resourceVersion"] = "7"  # someone else changed it meanwhile
    api.objects[ROUTE_PATH]["spec"]["rules"][0]["backendRefs"][0]["weight"] = 90
    with pytest.raises(TargetError, match="409 Conflict"):
        sink.enact(before, 0, decision("route_back"))
    assert refs(api.objects[ROUTE_PATH])["llm-reference"] == 90


def test_target_failures_are_ok_false_never_exceptions(api):
    missing = SINKS.get("httproute")({"url": api.url(ROUTE_PATH + "-gone"), "candidate": "llm-candidate"}, "x")
    assert not missing.apply(decision("route_back")).ok
    no_candidate = route_sink(api, candidate="nobody", reference=None)
    result = no_candidate.apply(decision("route_back"))
    assert not result.ok and "no backendRef named 'nobody'" in result.message
    closed = SINKS.get("httproute")({"url": "http://127.0.0.1:9/x", "candidate": "c", "timeout_s": 2}, "x")
    result = closed.apply(decision("route_back"))
    assert not result.ok and "cannot read the target" in result.message and "error" in closed.read_back()


def test_a_patch_whose_result_breaks_the_crd_schema_is_never_sent(api):
    api.objects[ROUTE_PATH]["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000  # beyond the CRD's maximum
    result = route_sink(api).apply(decision("route_back"))
    assert not result.ok and "not a valid httproute" in result.message and "port" in result.message
    assert patches(api) == []


# -- httproute in a file ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_manifest_file_is_patched_atomically_and_read_back(tmp_path, suffix):
    path = tmp_path / f"route{suffix}"
    path.write_text(json.dumps(ROUTE) if suffix == ".json" else yaml.safe_dump(ROUTE))
    sink = SINKS.get("httproute")({"file": str(path), "candidate": "llm-candidate", "reference": "llm-reference"}, "x")
    result = sink.apply(decision("route_back"))
    assert result.ok and result.changed and result.read_back["target"] == str(path)
    stored = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text())
    assert refs(stored) == {"llm-reference": 100, "llm-candidate": 0}
    assert {k: v for k, v in stored.items() if k != "spec"} == {k: v for k, v in ROUTE.items() if k != "spec"}
    again = sink.apply(decision("route_back"))
    assert (again.ok, again.changed) == (True, False)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_an_invalid_manifest_file_is_left_as_it_was(tmp_path):
    broken = copy.deepcopy(ROUTE)
    broken["spec"]["rules"][0]["backendRefs"][0]["weight"] = "half"
    path = tmp_path / "route.yaml"
    path.write_text(yaml.safe_dump(broken))
    before = path.read_text()
    sink = SINKS.get("httproute")({"file": str(path), "candidate": "llm-candidate"}, "x")
    result = sink.apply(decision("route_back"))
    assert not result.ok and "is not of type 'integer'" in result.message
    assert path.read_text() == before
    path.write_text("spec: [unclosed")
    assert "is not valid YAML" in SINKS.get("httproute")({"file": str(path), "candidate": "c"}, "x").apply(
        decision("route_back")).message


# -- argo-abort ---------------------------------------------------------------------------------------


def test_route_back_aborts_the_rollout_through_the_status_subresource(api):
    result = argo_sink(api).apply(decision("route_back"))
    assert (result.ok, result.changed) == (True, True), result.message
    assert result.read_back["abort"] is True and result.read_back["phase"] == "Paused"
    (patch,) = patches(api)
    assert patch["path"] == ROLLOUT_PATH + "/status" and patch["content_type"] == "application/merge-patch+json"
    assert api.objects[ROLLOUT_PATH]["status"]["abort"] is True
    assert api.objects[ROLLOUT_PATH]["spec"] == ROLLOUT["spec"]
    again = argo_sink(api).apply(decision("route_back"))
    assert (again.ok, again.changed) == (True, False) and len(patches(api)) == 1


def test_restore_retries_the_rollout_and_hold_changes_nothing(api):
    argo_sink(api).apply(decision("route_back"))
    held = argo_sink(api).apply(decision("hold"))
    assert (held.ok, held.changed) == (True, False) and api.objects[ROLLOUT_PATH]["status"]["abort"] is True
    restored = argo_sink(api).apply(decision("restore"))
    assert restored.ok and restored.changed and restored.read_back["abort"] is False
    assert api.objects[ROLLOUT_PATH]["status"]["abort"] is False


def test_without_a_status_subresource_the_object_itself_is_patched(monkeypatch):
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    old = KubeApi({ROLLOUT_PATH: ROLLOUT}, token=TOKEN, status_subresource=False)
    try:
        result = argo_sink(old).apply(decision("route_back"))
        assert result.ok and [p["path"] for p in patches(old)] == [ROLLOUT_PATH + "/status", ROLLOUT_PATH]
    finally:
        old.close()


def test_argo_dry_run_and_file_target(api, tmp_path):
    dry = argo_sink(api).apply(decision("route_back"), dry_run=True)
    assert (dry.ok, dry.dry_run, dry.changed, dry.read_back["abort"]) == (True, True, False, False)
    assert "would abort the Rollout" in dry.message and patches(api) == []
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(ROLLOUT))
    result = SINKS.get("argo-abort")({"file": str(path)}, "x").apply(decision("route_back"))
    assert result.ok and yaml.safe_load(path.read_text())["status"]["abort"] is True


def test_an_invalid_rollout_is_not_aborted_through_a_file(tmp_path):
    path = tmp_path / "rollout.json"
    path.write_text(json.dumps({**ROLLOUT, "spec": {**ROLLOUT["spec"], "replicas": "two"}}))
    before = path.read_text()
    result = SINKS.get("argo-abort")({"file": str(path)}, "x").apply(decision("route_back"))
    assert not result.ok and "not a valid rollout" in result.message and path.read_text() == before


# -- options ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "options", "words"), [
    ("httproute", {"candidate": "c"}, "`url` or `file` is required"),
    ("httproute", {"candidate": "c", "file": "f", "url": "http://127.0.0.1/x"}, "exclude each other"),
    ("httproute", {"url": "http://127.0.0.1/x"}, "`candidate` is required"),
    ("httproute", {"url": "ftp://x/y", "candidate": "c"}, "`url` must be an http:// or https:// URL"),
    ("httproute", {"url": "http://127.0.0.1/x", "candidate": "c", "token_env": "NOT_SET_ANYWHERE"},
     "names $NOT_SET_ANYWHERE, which is not set"),
    ("httproute", {"url": "http://127.0.0.1/x", "candidate": "c", "token_env": "a-b"}, "must name an environment"),
    ("httproute", {"file": "f.yaml", "candidate": "c", "token_env": "K8S_TOKEN"}, "only applies with `url`"),
    ("httproute", {"url": "http://k8s.example/x", "candidate": "c", "token_env": "K8S_TOKEN"}, "use https://"),
    ("httproute", {"url": "https://k8s/x", "candidate": "c", "rule": "0"}, "`rule` must be a whole number"),
    ("httproute", {"url": "https://k8s/x", "candidate": "c", "token": "abc"}, "name that variable with `token_env`"),
    ("httproute", {"url": "https://k8s/x", "candidate": "c", "ca_file": "/nonexistent"}, "not a file"),
    ("argo-abort", {"url": "https://k8s/x", "candidate": "c"}, "`candidate` is not an option of the `argo-abort` sink"),
    ("argo-abort", {}, "`url` or `file` is required"),
])
def test_bad_options_are_usage_errors(monkeypatch, kind, options, words):
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(UsageError) as caught:
        SINKS.get(kind)(options, "contract.yaml: watch.sinks[1]")
    text = caught.value.format_message()
    assert caught.value.exit_code == 2 and text.startswith("contract.yaml: watch.sinks[1]: `") and words in text
    assert TOKEN not in text


def test_a_rule_without_the_reference_backendref_is_ok_false(api):
    result = route_sink(api, reference="llm-missing").apply(decision("route_back"))
    assert not result.ok and "no backendRef named 'llm-missing' (the `reference`)" in result.message
    assert patches(api) == []


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (openssl), as a cluster's CA bundle would sign the API server's."""
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


def test_an_https_api_server_is_verified_against_the_ca_file(monkeypatch, certificate):
    """``ca_file`` wins over $REQUESTS_CA_BUNDLE (set in many CI images), which requests lets replace a session's
    CA file: http.py passes it per request."""
    import certifi

    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    server = KubeApi({ROUTE_PATH: ROUTE}, token=TOKEN, tls=certificate)
    try:
        assert server.url(ROUTE_PATH).startswith("https://")
        trusted = route_sink(server, ca_file=certificate[0]).apply(decision("route_back"))
        assert trusted.ok and refs(server.objects[ROUTE_PATH]) == {"llm-reference": 100, "llm-candidate": 0}
        sent = len(server.requests)
        untrusted = route_sink(server).apply(decision("restore"))  # the system CA bundle does not know it
        assert not untrusted.ok and "TLS" in untrusted.message and len(server.requests) == sent
        assert TOKEN not in json.dumps(untrusted.to_json())
    finally:
        server.close()


def test_a_patch_accepted_but_not_kept_is_ok_false_from_the_read_back(api):
    api.ignore_patches = True
    result = route_sink(api).apply(decision("route_back"))
    assert (result.ok, result.changed) == (False, False) and "reads back a different state" in result.message
    assert result.read_back["weights"]["0"] == {"llm-candidate": 50, "llm-reference": 50} and len(patches(api)) == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="a cross-check with kubectl's own merge patch; "
                    "the sinks' tests above do not need it")
def test_the_merge_patches_give_what_kubectl_gives(api, tmp_path):
    """The object each sink's patch produces (promote's RFC 7386) is the one ``kubectl patch --local --type
    merge`` produces from the same patch (the Kubernetes client's own JSON merge patch)."""
    from promote.sinks.kube import merge_patch

    sent: dict[str, dict] = {}
    for sink, path in ((route_sink(api), ROUTE_PATH), (argo_sink(api), ROLLOUT_PATH)):
        original = copy.deepcopy(api.objects[path])
        target = sink.target
        real_patch = target.patch

        def capture(patch, *, subresource=None, current=None, _real=real_patch, _path=path):
            sent[_path] = patch
            return _real(patch, subresource=subresource, current=current)

        target.patch = capture
        assert sink.apply(decision("route_back")).ok
        (tmp_path / "object.json").write_text(json.dumps(original))
        proc = subprocess.run(["kubectl", "patch", "--local", "-f", str(tmp_path / "object.json"), "--type", "merge",
                               "-p", json.dumps(sent[path]), "-o", "json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert merge_patch(original, sent[path]) == json.loads(proc.stdout)
