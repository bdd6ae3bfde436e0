"""CLI behaviour: one test per exit code, report formats, validate/init/schema, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
from click.testing import CliRunner

from promote.cli import cli
from promote.resources import load_schema


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_exit_0_when_every_clause_passes(mini):
    result = invoke("check", str(mini.contract()), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    assert report["verdict"] == "pass"
    statuses = {c["id"]: c["status"] for c in report["stages"][0]["clauses"]}
    assert statuses == {"kl-mean": "pass", "agree": "pass", "finite": "pass"}
    assert report["data"]["positions"] == sum(5 + i % 6 - 1 for i in range(24))
    assert report["kernels"]["reference"]["fingerprint"]["float32_matmul_precision"] == "highest"


def test_exit_1_when_a_clause_fails_and_the_report_names_it(mini):
    result = invoke("check", str(mini.contract(candidate="build_hot")), "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    kl = next(c for c in report["stages"][0]["clauses"] if c["id"] == "kl-mean")
    assert kl["status"] == "fail" and kl["observed"] > 1e-3
    assert kl["evidence"]["worst"][0]["sample_id"].startswith("s")
    assert report["verdict"] == "block"
    assert any(a["clause"] == "kl-mean" and a["action"] == "block" for a in report["actions"])


def test_fail_on_never_and_warn(mini):
    path = mini.contract(candidate="build_hot")
    assert invoke("check", str(path), "--fail-on", "never").exit_code == 0
    warn_only = mini.contract("warn.yaml", candidate="build_hot", clauses=[
        {"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1e-3, "severity": "warn"}])
    assert invoke("check", str(warn_only)).exit_code == 0
    assert invoke("check", str(warn_only), "--fail-on", "warn").exit_code == 1


def test_exit_2_for_an_invalid_contract_with_located_message(mini):
    path = mini.write("bad.yaml", """\
        version: 1
        name: bad
        numercal: {}
        """)
    result = invoke("check", str(path))
    assert result.exit_code == 2
    assert f"{path}:3:1" in result.stderr
    assert "did you mean `numerical`" in result.stderr
    assert "Traceback" not in result.output


def test_exit_2_for_usage_errors():
    assert invoke("check").exit_code == 2
    assert invoke("check", "x.yaml", "--format", "pdf").exit_code == 2
    assert invoke("check", "x.yaml", "--output", "json").exit_code == 2


def test_exit_3_when_the_factory_raises_and_report_still_written(mini, tmp_path):
    out = tmp_path / "out" / "report.json"
    result = invoke("check", str(mini.contract(candidate="build_broken")), "--output", f"json={out}")
    assert result.exit_code == 3
    assert "factory exploded" in result.stderr
    report = json.loads(out.read_text())
    jsonschema.validate(report, load_schema("report"))
    assert report["verdict"] == "error"
    assert {c["status"] for c in report["stages"][0]["clauses"]} == {"error"}


def test_exit_2_when_model_output_is_not_logits(mini):
    result = invoke("check", str(mini.contract(candidate="build_wrong_shape")))
    assert result.exit_code == 2
    assert "[batch, seq, vocab]" in result.stderr


def test_constant_outputs_are_vacuous_not_pass(mini):
    doc = mini.contract(candidate="build_constant")
    text = doc.read_text().replace("model.py:build\n", "model.py:build_constant\n", 1)
    doc.write_text(text)
    result = invoke("check", str(doc), "--format", "json")
    report = json.loads(result.stdout)
    assert {c["status"] for c in report["stages"][0]["clauses"]} == {"vacuous"}
    assert result.exit_code == 1  # vacuous is routed like a violation (default: block)


def test_nan_outputs_fail_every_divergence_clause(mini):
    path = mini.contract(candidate="build_nan", clauses=[
        {"id": "kl-max", "metric": "kl", "stat": "max", "max": 10.0},
        {"id": "finite", "metric": "nonfinite", "stat": "max", "max": 0},
    ])
    result = invoke("check", str(path), "--format", "json")
    report = json.loads(result.stdout)
    statuses = {c["id"]: c for c in report["stages"][0]["clauses"]}
    assert statuses["kl-max"]["status"] == "fail" and statuses["kl-max"]["observed_text"] == "nan"
    assert statuses["finite"]["status"] == "fail" and statuses["finite"]["observed"] == 1
    assert result.exit_code == 1


def test_unimplemented_stage_is_an_error_not_a_pass(mini, runtime_unimplemented):
    path = mini.contract(extra={"runtime": {"clauses": [{"id": "p99", "metric": "latency_ms", "stat": "p99",
                                                         "max_ratio": 1.1}]}})
    result = invoke("check", str(path), "--format", "json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    runtime = next(s for s in report["stages"] if s["name"] == "runtime")
    assert runtime["clauses"][0]["status"] == "error"
    # Selecting only numerics skips runtime explicitly and the gate can pass.
    only = invoke("check", str(path), "--stage", "numerics", "--format", "json")
    assert only.exit_code == 0
    assert json.loads(only.stdout)["stages"][1]["clauses"][0]["status"] == "skipped"


def test_nothing_evaluated_is_not_a_pass(mini):
    result = invoke("check", str(mini.contract()), "--stage", "runtime", "--format", "json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["verdict"] == "error"


def test_markdown_and_text_outputs(mini, tmp_path):
    md = tmp_path / "r.md"
    result = invoke("check", str(mini.contract(candidate="build_hot")), "--output", f"markdown={md}", "--no-color")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "kl-mean" in result.stdout
    assert "\x1b[" not in result.stdout
    text = md.read_text()
    assert "Promotion blocked" in text and "| ❌ fail | `kl-mean` |" in text


def test_validate_reports_every_problem_and_ok(mini):
    good = mini.contract()
    result = invoke("validate", str(good))
    assert result.exit_code == 0 and "ok" in result.stdout
    bad = mini.write("bad.yaml", """\
        version: 1
        name: bad
        reference: {kind: torch, model: "missing.py:build"}
        candidate: {kind: torch, model: "model.py:build", precision: bf17}
        data: {path: eval.jsonl}
        numerical:
          clauses:
            - {id: a, metric: kl, stat: mean, max: 1}
            - {id: a, metric: kll, stat: mean, max: 1}
        """)
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    err = result.stderr
    assert "bf17" in err and "did you mean `bf16`" in err
    assert "kll" in err and "did you mean `kl`" in err


def test_validate_reports_malformed_data_line(mini):
    (mini.root / "eval.jsonl").write_text('{"id": "a", "input_ids": [1, 2]}\n{"id": "b", "input_ids": [1,\n')
    result = invoke("validate", str(mini.contract()))
    assert result.exit_code == 2
    assert "eval.jsonl:2: malformed JSON" in result.stderr


def test_schema_and_version_and_init(tmp_path):
    schema = json.loads(invoke("schema").stdout)
    assert schema["title"] == "promote kernel contract"
    assert json.loads(invoke("schema", "report").stdout)["title"] == "promote report"
    calibration = json.loads(invoke("schema", "calibration").stdout)
    assert calibration["properties"]["schema"]["const"] == "promote-calibration/1"
    assert "0." in invoke("--version").stdout
    target = tmp_path / "promote.yaml"
    assert invoke("init", str(target)).exit_code == 0
    assert invoke("init", str(target)).exit_code == 2  # refuses to overwrite
    from promote.contract.load import parse_yaml, validate

    doc = parse_yaml(target)
    assert validate(doc, load_schema("contract")) == []


def test_init_writes_a_starter_that_runs_as_written(tmp_path):
    """`promote init` once wrote a contract whose model, weights and data did not exist (5 "not found"):
    now the example's files come beside it and `promote check` on the result passes as written."""
    result = invoke("init", str(tmp_path))  # a directory: tmp_path/promote.yaml
    assert result.exit_code == 0, result.output
    assert "promote check" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.jsonl", "model.py", "promote.yaml",
                                                          "weights.safetensors"]
    checked = invoke("check", str(tmp_path / "promote.yaml"), "--no-progress", "--format", "json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    statuses = {c["id"]: c["status"] for s in report["stages"] for c in s["clauses"]}
    assert statuses and set(statuses.values()) == {"pass"}, statuses
    assert report["data"]["samples"] == 320


def test_init_never_overwrites_a_users_file_and_no_example_writes_the_contract_alone(tmp_path):
    (tmp_path / "model.py").write_text("# mine\n")
    refused = invoke("init", str(tmp_path / "promote.yaml"))
    assert refused.exit_code == 2 and "model.py already exists" in refused.stderr and "--no-example" in refused.stderr
    assert (tmp_path / "model.py").read_text() == "# mine\n" and not (tmp_path / "promote.yaml").exists()
    alone = invoke("init", str(tmp_path / "promote.yaml"), "--no-example")
    assert alone.exit_code == 0 and "edit the kernels and data paths" in alone.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "promote.yaml"]
    forced = invoke("init", str(tmp_path / "promote.yaml"), "--force")
    assert forced.exit_code == 0 and (tmp_path / "model.py").read_text() != "# mine\n"


def test_help_does_not_import_torch():
    code = "import sys; from promote.cli import cli; cli.main(['--help'], standalone_mode=False); " \
           "assert 'torch' not in sys.modules, 'torch imported'; assert 'numpy' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Exit codes" in proc.stdout


def test_validate_names_duplicate_ids_missing_files_and_a_contract_without_stages(mini):
    bad = mini.write("dup.yaml", """\
        version: 1
        name: dup
        reference: {kind: torch, model: "missing.py:build", weights: nowhere.safetensors}
        candidate: {kind: torch, model: "model.py:build"}
        data: {path: eval.jsonl}
        numerical:
          clauses:
            - {id: a, metric: kl, stat: mean, max: 1}
            - {id: a, metric: tv, stat: mean, max: 1}
        """)
    err = invoke("validate", str(bad)).stderr
    assert f"{bad}:9:" in err and "duplicate clause id `a` (first used at line 8)" in err
    assert f"{bad}:3:" in err and "model file `missing.py` not found" in err
    assert "weights file `nowhere.safetensors` not found" in err
    no_stage = mini.write("nostage.yaml", """\
        version: 1
        name: idle
        reference: {kind: torch, model: "model.py:build"}
        candidate: {kind: torch, model: "model.py:build"}
        data: {path: eval.jsonl}
        """)
    result = invoke("validate", str(no_stage))
    assert result.exit_code == 2
    assert "the contract names no stage" in result.stderr


def test_paths_resolve_relative_to_the_contract_not_the_working_directory(mini, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("check", str(mini.contract())).exit_code == 0


def test_parameterized_metrics_are_judged_and_their_keys_checked(mini):
    path = mini.contract(candidate="build_hot", clauses=[
        {"id": "outside", "metric": "ratio_outside", "stat": "mean", "cap": 1.05, "max": 0.0},
        {"id": "top3", "metric": "topk_overlap", "stat": "mean", "k": 3, "min": 0.5},
        {"id": "sharp", "metric": "entropy_ratio", "stat": "mean", "min": 0.99},
    ])
    report = json.loads(invoke("check", str(path), "--format", "json").stdout)
    clauses = {c["id"]: c for c in report["stages"][0]["clauses"]}
    assert clauses["outside"]["status"] == "fail" and clauses["outside"]["observed"] > 0
    assert clauses["top3"]["status"] == "pass"
    assert clauses["sharp"]["status"] == "fail" and clauses["sharp"]["observed"] < 0.99  # hotter logits
    wrong = mini.contract("wrong.yaml", clauses=[{"id": "x", "metric": "kl", "stat": "mean", "k": 3, "max": 1}])
    result = invoke("validate", str(wrong))
    assert result.exit_code == 2 and "`k` applies to metric `topk_overlap` only" in result.stderr


def test_cuda_requested_without_a_cuda_device_is_a_clear_exit_3(mini, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = mini.contract()
    path.write_text(path.read_text().replace("precision: fp32\n  batch_size: 5\ncandidate:",
                                             "precision: fp32\n  batch_size: 5\n  device: cuda\ncandidate:", 1))
    result = invoke("check", str(path))
    assert result.exit_code == 3
    assert "`device: cuda` but torch sees no CUDA device" in result.stderr
    assert "internal error" not in result.stderr


def test_merge_takes_unselected_stages_from_an_earlier_report_of_the_same_contract(mini, tmp_path,
                                                                                  runtime_unimplemented):
    hot = mini.contract(candidate="build_hot", extra={"runtime": {"clauses": [
        {"id": "p99", "metric": "latency_ms", "stat": "p99", "max_ratio": 1.1}]}})
    earlier = tmp_path / "numerics.json"
    assert invoke("check", str(hot), "--stage", "numerics", "--output", f"json={earlier}").exit_code == 1
    # Deploy time: only the runtime stage runs; the numerics failure from the PR run still counts.
    result = invoke("check", str(hot), "--stage", "runtime", "--merge", str(earlier), "--format", "json")
    report = json.loads(result.stdout)
    numerics = next(s for s in report["stages"] if s["name"] == "numerics")
    assert numerics["notes"][0].startswith(f"merged from {earlier}")
    assert next(c for c in numerics["clauses"] if c["id"] == "kl-mean")["status"] == "fail"
    assert result.exit_code == 3  # runtime is not implemented: error wins, but the fail is visible
    other = mini.contract("other.yaml")
    mismatch = invoke("check", str(other), "--merge", str(earlier))
    assert mismatch.exit_code == 2 and "merge only reports of the same contract version" in mismatch.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert "not a promote report" in invoke("check", str(other), "--merge", str(bad)).stderr
