"""A toy offline stage (its own consumer and clause) and a toy kernel kind, plugged into the
registries from the tests folder (``tests/toy_plugins.py``) without editing ``src/``, run through
``check``, ``--shard``/``merge`` and (``test_scale_ray.py``) the Ray engine: merged == single-process."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from click.testing import CliRunner
from scale_support import EXAMPLE, comparable

from promote.cli import cli
from promote.run import run_check, run_merge, write_shard
from promote.scale.partial import Partial


@pytest.fixture
def toy():
    """The plug-ins registered for one test, and taken out after it."""
    import toy_plugins

    toy_plugins.register()
    yield toy_plugins
    toy_plugins.unregister()
    sys.modules.pop("toy_plugins", None)


def toy_contract(tmp_path, *, perturb: float = 1e-3, limit: int = 40, bound: float = 1e-3):
    doc = {
        "version": 1, "name": "toy",
        "reference": {"kind": "toy", "seed": 7, "batch_size": 8},
        "candidate": {"kind": "toy", "seed": 7, "perturb": perturb, "batch_size": 8},
        "data": {"path": str(EXAMPLE / "eval.jsonl"), "limit": limit},
        "numerical": {"clauses": [{"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1e-2}]},
        "toy": {"clauses": [{"id": "gap-mean", "max": bound}]},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_plugged_stage_and_kind_run_through_check(toy, tmp_path):
    report = run_check(str(toy_contract(tmp_path)))
    stages = {s.name: s for s in report.stages}
    assert list(stages) == ["numerics", "toy"]  # registered after the built-ins: run after them
    gap = stages["toy"]
    assert gap.status == "pass" and gap.details["positions"] == report.data["positions"]  # every scored position
    assert 0 < gap.details["mean"] <= 1e-3
    assert report.kernels["candidate"]["spec"]["kind"] == "toy" and report.exit_code == 0
    # its clause can fail: a larger perturbation breaks the bound
    loud = run_check(str(toy_contract(tmp_path, perturb=0.5)))
    assert next(s for s in loud.stages if s.name == "toy").status == "fail" and loud.exit_code == 1
    # the CLI validates the plug-in's section against its schema: a wrong key is a located error
    bad = tmp_path / "bad.yaml"
    bad.write_text(toy_contract(tmp_path).read_text().replace("max: 0.001", "maxx: 0.001"))
    res = CliRunner().invoke(cli, ["validate", str(bad)])
    assert res.exit_code == 2 and "maxx" in res.output


def test_a_plugged_stage_and_kind_shard_and_merge_like_one_process(toy, tmp_path):
    path = toy_contract(tmp_path)
    single = run_check(str(path))
    outs = [tmp_path / f"p{i}" for i in range(3)]
    assert [write_shard(str(path), i, 3, out) for i, out in enumerate(outs)] == [0, 0, 0]
    partial = Partial.read(outs[1])
    assert partial.stages == ["numerics", "toy"] and set(partial.states["toy"]) == {"gap"}
    for order in (outs, outs[::-1]):
        assert comparable(run_merge(order)) == comparable(single)
    merged = json.loads(json.dumps(run_merge(outs).to_dict()))
    assert merged["stages"][1]["details"]["positions"] == single.stages[1].details["positions"]


def test_promote_plugins_names_plug_in_modules_for_the_cli(tmp_path):
    """A separate `promote` process knows the plug-ins only through $PROMOTE_PLUGINS: with it the toy
    contract checks, without it its kind and section are located schema errors (exit 2)."""
    import os
    import subprocess
    from pathlib import Path

    path = toy_contract(tmp_path)
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent / "src"), str(here)])}
    argv = [sys.executable, "-c", "import sys; from promote.cli import cli; sys.exit(cli())"]
    run = subprocess.run([*argv, "check", str(path), "--format", "json", "--no-progress"], capture_output=True,
                         text=True, env={**env, "PROMOTE_PLUGINS": "toy_plugins"}, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert [s["name"] for s in json.loads(run.stdout)["stages"]] == ["numerics", "toy"]
    bare = subprocess.run([*argv, "validate", str(path)], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert bare.returncode == 2 and "unknown key `toy`" in bare.stderr
    assert "`toy` is not an allowed value" in bare.stderr


def test_a_plugged_stage_is_picked_with_stage_and_its_report_renders_and_merges(toy, tmp_path):
    """`--stage` is checked against the registry when the command runs (not fixed when the CLI
    loads), and a report holding a plug-in stage is a valid report for `render` and `check --merge`;
    without the plug-in registered both refuse it with exit 2 and say how to fix it."""
    path = toy_contract(tmp_path)
    earlier = tmp_path / "toy.json"
    run = CliRunner().invoke(cli, ["check", str(path), "--stage", "toy", "--output", f"json={earlier}",
                                   "--no-progress"])
    assert run.exit_code == 0, run.output
    stages = {s["name"]: s for s in json.loads(earlier.read_text())["stages"]}
    assert stages["toy"]["status"] == "pass" and stages["numerics"]["status"] == "skipped"
    rendered = CliRunner().invoke(cli, ["render", str(earlier), "--format", "markdown"])
    assert rendered.exit_code == 0 and "gap-mean" in rendered.output, rendered.output
    merged = CliRunner().invoke(cli, ["check", str(path), "--stage", "numerics", "--merge", str(earlier),
                                      "--format", "json", "--no-progress"])
    report = json.loads(merged.stdout)
    toy_stage = next(s for s in report["stages"] if s["name"] == "toy")
    assert toy_stage["status"] == "pass" and toy_stage["notes"][0].startswith(f"merged from {earlier}")
    assert merged.exit_code == 0
    # an escalation rule may name the plug-in's stage
    ruled = tmp_path / "ruled.yaml"
    ruled.write_text(path.read_text() + "escalation:\n  rules:\n  - when: {stage: toy}\n    action: warn\n")
    assert CliRunner().invoke(cli, ["validate", str(ruled)]).exit_code == 0
    toy.unregister()
    unknown = CliRunner().invoke(cli, ["check", str(path), "--stage", "toy"])
    assert unknown.exit_code == 2 and "unknown stage 'toy'" in unknown.output and "PROMOTE_PLUGINS" in unknown.output
    orphan = CliRunner().invoke(cli, ["render", str(earlier), "--format", "markdown"])
    assert orphan.exit_code == 2 and "names stage 'toy', which is not registered" in orphan.output
    toy.register()  # the fixture takes it out again


def test_a_plug_in_module_that_cannot_be_imported_is_a_usage_error(tmp_path):
    """A misspelt module in $PROMOTE_PLUGINS (or one whose import fails) is exit 2 naming the variable
    and the module, never a traceback."""
    import os
    import subprocess
    from pathlib import Path

    path = toy_contract(tmp_path)
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('plug-in bug')\n")
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent / "src"), str(here), str(tmp_path)])}
    argv = [sys.executable, "-c", "import sys; from promote.cli import cli; sys.exit(cli())"]
    for module, why in (("toy_plugin_typo", "ModuleNotFoundError"), ("broken_plugin", "plug-in bug")):
        run = subprocess.run([*argv, "validate", str(path)], capture_output=True, text=True, timeout=300,
                             env={**env, "PROMOTE_PLUGINS": module}, check=False)
        assert run.returncode == 2, run.stderr
        assert f"$PROMOTE_PLUGINS names the module `{module}`" in run.stderr and why in run.stderr
        assert "Traceback" not in run.stderr
