"""Smaller things a user hits (issue 9, class 8): sibling imports, reproduce lines with the
environment, merge identity after ``${VAR}``, precise numbers, margins near 0, report headers and
acknowledged consistency warnings."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from promote.cli import cli


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def test_a_model_file_can_import_a_sibling_module(mini, monkeypatch):
    mini.write("sibling_helpers_r8.py", "SCALE = 1.0\n")
    mini.write("wrapped.py", """\
        from sibling_helpers_r8 import SCALE
        from model import Mini


        def build():
            return Mini(scale=SCALE)
        """)
    monkeypatch.delitem(sys.modules, "sibling_helpers_r8", raising=False)
    monkeypatch.delitem(sys.modules, "model", raising=False)
    path_before = list(sys.path)
    wrapped = mini.contract("wrapped.yaml", candidate="build")
    wrapped.write_text(wrapped.read_text().replace("model: model.py:build\n  precision: fp32\n  batch_size: 5\n"
                                                   "data:", "model: wrapped.py:build\n  precision: fp32\n"
                                                   "  batch_size: 5\ndata:"))
    assert "wrapped.py:build" in wrapped.read_text()
    result = invoke("check", str(wrapped))
    assert result.exit_code == 0, result.output
    assert "No module named" not in result.output
    assert sys.path == path_before  # the folder was on sys.path only while importing
    sys.modules.pop("sibling_helpers_r8", None)
    sys.modules.pop("model", None)


def test_merge_refuses_a_report_made_with_another_value_of_a_variable(mini, tmp_path, runtime_unimplemented):
    contract = mini.contract(candidate="${CAND}", extra={"runtime": {"clauses": [
        {"id": "p99", "metric": "latency_ms", "stat": "p99", "max_ratio": 1.1}]}})
    earlier = tmp_path / "numerics.json"
    first = invoke("check", str(contract), "--stage", "numerics", "--output", f"json={earlier}",
                   env={"CAND": "build"})
    assert first.exit_code == 0, first.output
    report = json.loads(earlier.read_text())
    raw = __import__("hashlib").sha256(contract.read_bytes()).hexdigest()
    assert report["contract"]["raw_sha256"] == raw != report["contract"]["sha256"]
    # Same file, same variable values: merged.
    same = invoke("check", str(contract), "--stage", "runtime", "--merge", str(earlier), "--format", "json",
                  env={"CAND": "build"})
    assert same.exit_code == 3 and "merged from" in same.stdout  # runtime is not implemented: exit 3
    # Same file, another candidate: refused, and the message says why.
    other = invoke("check", str(contract), "--stage", "runtime", "--merge", str(earlier), env={"CAND": "build_hot"})
    assert other.exit_code == 2, other.output
    assert "other values for its ${VAR} references" in other.stderr


def test_reproduce_line_names_the_variables_the_contract_used(mini):
    contract = mini.contract(candidate="${CAND}", extra={"description": "${NOTE} by ${API_TOKEN}"})
    result = invoke("check", str(contract), env={"CAND": "build", "NOTE": "it's a test", "API_TOKEN": "s3cr3t",
                                                 "UNUSED": "x"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("reproduce: "))
    assert line == f"reproduce: CAND=build NOTE='it'\"'\"'s a test' API_TOKEN=*** promote check {contract}"
    assert "s3cr3t" not in result.stdout and "UNUSED" not in result.stdout


def test_observed_values_get_the_digits_that_show_why_they_failed(mini):
    from promote.results import Bound, compared

    assert compared(1.001409, [Bound("max", 1.000478)]) == ("1.0014", "≤ 1.0005")
    assert compared(0.9847, [Bound("min", 0.97)]) == ("0.9847", "≥ 0.97")  # 4 digits when they suffice
    assert compared(0.97, [Bound("min", 0.97)]) == ("0.97", "≥ 0.97")
    first = json.loads(invoke("check", str(mini.contract(candidate="build_hot")), "--format", "json").stdout)
    kl = next(c for c in first["stages"][0]["clauses"] if c["id"] == "kl-mean")["observed"]
    bound = kl * (1 - 2e-4)  # fails by 0.02 %: 4 significant digits print the same number twice
    close = mini.contract("close.yaml", candidate="build_hot", clauses=[
        {"id": "kl-mean", "metric": "kl", "stat": "mean", "max": bound}])
    result = invoke("check", str(close))
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "kl-mean:" in x)
    shown, required = line.split(" = ")[1].split(": required ≤ ")
    assert float(shown) > float(required)  # the printed numbers order as the real ones do
    assert abs(float(shown) - kl) < (kl - bound) / 10 and abs(float(required) - bound) < (kl - bound) / 10
    markdown = invoke("check", str(close), "--format", "markdown").stdout
    assert f"| {shown} | ≤ {required} |" in markdown


def test_relative_margin_is_left_out_for_a_bound_near_zero():
    from promote.report.filters import margin_text
    from promote.results import Bound

    assert margin_text(0.09033, [Bound("max", 1e-5)]) == "-0.09032"
    assert margin_text(0.0012, [Bound("max", 0.001)]) == "-2.000e-04 (-20%)"
    assert margin_text(0.5, [Bound("min", 0.98)]) == "-0.48 (-49%)"
    assert margin_text(0.0, [Bound("max", 0.001)]) == "+0.001 (+100%)"
    assert margin_text(0.3, [Bound("max", 0.0)]) == "-0.3"


def test_report_header_names_the_model_file_onnx_path_and_records():
    from reports import normal_report

    from promote.report.render import RENDERERS

    report = normal_report()
    report.kernels["reference"]["spec"] = {"kind": "onnx", "path": "exports/model.onnx", "providers": ["CPU"]}
    report.kernels["candidate"]["spec"] = {"kind": "records", "path": "runs/vllm_records", "batch_size": 16}
    text = RENDERERS["text"](report)
    assert "  reference: onnx (exports/model.onnx)\n  candidate: records (runs/vllm_records)\n" in text
    markdown = RENDERERS["markdown"](report)
    assert "Reference onnx (exports/model.onnx) vs candidate records (runs/vllm\\_records) on" in markdown
    torch_report = normal_report()
    assert "  reference: torch fp32 (model.py:build)\n" in RENDERERS["text"](torch_report)


CHAIN = [{"id": "osc", "metric": "logit_osc", "stat": "max", "max": 5},
         {"id": "tv", "metric": "tv", "stat": "max", "max": 0.01}]


def test_consistency_warnings_print_once_on_stderr_with_an_id(mini):
    result = invoke("check", str(mini.contract(clauses=CHAIN)))
    assert result.exit_code == 0, result.output
    assert "does not imply" not in result.stdout
    assert result.stderr.count("does not imply clause `tv`") == 1
    line = next(x for x in result.stderr.splitlines() if "does not imply" in x)
    assert ": warning: clause `osc` allows max(logit_osc) up to 5" in line and line.split(":")[1].isdigit()
    assert "[warning id `chain/osc/tv`; to acknowledge it, add it to `consistency: {ignore: [chain/osc/tv]}`]" in line


def test_a_contract_acknowledges_a_consistency_warning(mini):
    from promote.contract.model import load_contract

    for extra in ({"consistency": {"ignore": ["chain/osc/tv"]}}, {}):
        numerical = {} if extra else {"consistency": {"ignore": ["chain/osc/tv"]}}
        path = mini.contract(clauses=CHAIN, extra=extra, numerical=numerical)
        assert invoke("validate", str(path)).stderr == ""
        result = invoke("check", str(path), "--format", "json")
        assert result.exit_code == 0 and "does not imply" not in result.stderr + result.stdout
        assert json.loads(result.stdout)["warnings"] == []
        assert load_contract(path)[0].consistency_ignore == ("chain/osc/tv",)
    stale = mini.contract(clauses=CHAIN[1:], extra={"consistency": {"ignore": ["chain/osc/tv"]}})
    assert "`chain/osc/tv` acknowledges no current consistency warning" in invoke("validate", str(stale)).stderr
    typo = mini.contract(clauses=CHAIN, extra={"consistency": {"ignore": ["osc/tv"]}})
    assert invoke("validate", str(typo)).exit_code == 2


def test_tiny_llama_reference_loads_without_a_progress_bar(capfd):
    """transformers' "Loading weights" tqdm bar once leaked into reports' logs and test failures (issue 25)."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("tiny_llama_model_r25", REPO / "examples/tiny_llama/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capfd.readouterr()
    model = module.build()
    out, err = capfd.readouterr()
    assert model is not None
    assert "Loading weights" not in err + out and "\r" not in err + out, err
