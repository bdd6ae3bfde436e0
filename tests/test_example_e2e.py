"""End to end: the README's example command on the shipped tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from promote.cli import cli
from promote.resources import load_schema

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"


def test_example_contract_passes_with_real_bf16_drift(tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["check", str(EXAMPLE / "contract.yaml"), "--output", f"json={out}",
                                      "--output", f"markdown={tmp_path / 'report.md'}"])
    assert result.exit_code == 0, result.output
    assert "Promotion allowed" in result.stdout
    report = json.loads(out.read_text())
    jsonschema.validate(report, load_schema("report"))
    stage = report["stages"][0]
    assert report["data"]["samples"] >= 300
    assert stage["details"]["positions"] == report["data"]["positions"] > 10_000
    metrics = stage["details"]["metrics"]
    # bf16 autocast really changes the outputs: a nonzero drift, inside the bf16 band.
    assert 1e-6 < metrics["kl"]["stats"]["mean"] < 1e-3
    assert metrics["logit_osc"]["stats"]["max"] > 0
    assert metrics["argmax_agree"]["stats"]["mean"] < 1.0
    floor = stage["details"]["noise_floor"]["floor"]
    assert floor["kl"]["mean"] < metrics["kl"]["stats"]["mean"] / 1000  # fp32 noise ≪ bf16 drift
    assert report["kernels"]["candidate"]["fingerprint"]["precision"] == "bf16"
    assert "| Clause |" in (tmp_path / "report.md").read_text()
