"""examples/rl_rollouts: the shipped sampled-token records pass the contract for the honest pair and
are blocked for both planted mismatches, naming the slice; the script regenerates a passing run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner

from promote.cli import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rl_rollouts"


def check(contract: Path, variant: str) -> tuple[int, dict]:
    result = CliRunner(env={"ROLLOUTS": variant}).invoke(cli, ["check", str(contract), "--format", "json"],
                                                         catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def failing(report: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for stage in report["stages"]:
        for clause in stage["clauses"]:
            if clause["status"] == "fail":
                out.setdefault(clause["id"], set()).add(clause.get("slice") or "")
    return out


def test_honest_rollouts_pass_offline():
    code, report = check(EXAMPLE / "contract.yaml", "honest")
    assert code == 0, failing(report)
    assert report["kernels"]["candidate"]["fingerprint"]["format"] == "sampled"
    assert {e["quantity"] for e in report["implied"]} >= {"importance_weight_bias", "ppo_clip_budget_used"}


def test_tempered_sampler_is_blocked():
    code, report = check(EXAMPLE / "contract.yaml", "planted-temp")
    fails = failing(report)
    assert code == 1 and {"clip-budget", "tis-high", "seq-mask"} <= set(fails), fails


def test_late_position_bug_is_blocked_and_the_slice_named():
    code, report = check(EXAMPLE / "contract.yaml", "planted-late")
    fails = failing(report)
    assert code == 1
    # Response positions from 32 on drift; the early bands pass.
    assert {"response_position=[32,48)", "response_position=[48,inf)"} <= fails["slice-k3"], fails
    assert not {"response_position=[0,16)", "response_position=[16,32)"} & fails["slice-k3"]
    assert fails["worst-logratio"] == {"response_position=[48,inf)"}


def test_the_script_regenerates_a_passing_honest_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("make_rollouts", None)
    import make_rollouts

    make_rollouts.main(["--out", str(tmp_path / "rollouts"), "--variants", "honest"])
    shutil.copy(EXAMPLE / "contract.yaml", tmp_path / "contract.yaml")
    code, report = check(tmp_path / "contract.yaml", "honest")
    assert code == 0, failing(report)
    shipped = (EXAMPLE / "rollouts" / "honest" / "rollouts.jsonl").read_text().splitlines()
    fresh = (tmp_path / "rollouts" / "honest" / "rollouts.jsonl").read_text().splitlines()
    assert [json.loads(x)["prompt_ids"] for x in fresh] == [json.loads(x)["prompt_ids"] for x in shipped]
