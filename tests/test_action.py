"""The composite action and the workflows: metadata schema, actionlint, zizmor, and the action's own
shell steps run locally in a temp dir with the environment a runner would set."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml

from promote.github.workflow import read_outputs

REPO = Path(__file__).resolve().parents[1]
ACTION = REPO / "action.yml"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
ARTIFACT_URL = "https://github.com/o/r/actions/runs/1/artifacts/2"


def tool(name: str) -> str:
    """A dev tool installed beside this interpreter (pyproject [dev]); missing is a failure, not a skip."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def test_action_metadata_validates_against_the_github_actions_schema():
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_declares_the_documented_interface():
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {"contract", "stages", "fail-on", "comment", "github-token", "python-version",
                                     "extra-args", "artifact-name", "kernel-cache"}  # issues 15 and 22
    assert set(action["outputs"]) == {"verdict", "exit-code", "report-json", "report-html", "artifact-url"}
    steps = action["runs"]["steps"]
    setup = steps[0]
    assert re.fullmatch(r"actions/setup-python@[0-9a-f]{40}", setup["uses"])  # pinned by SHA
    assert setup["with"]["update-environment"] is False
    for step in steps[1:]:
        if "uses" in step:  # the report upload (issue 15), the compiled-kernel cache (issue 22)
            assert re.fullmatch(r"actions/(upload-artifact|cache/restore|cache/save)@[0-9a-f]{40}", step["uses"])
            continue
        assert step["shell"] == "bash"
        assert "${{" not in step["run"], "inputs must reach scripts through env:, never the script text"


def _doc_workflows(tmp_path: Path) -> list[Path]:
    """The recipe workflows in docs/github-action.md, written out so they are linted too."""
    text = (REPO / "docs" / "github-action.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if re.search(r"^on:", b, re.M)]
    assert len(blocks) == 2, "the workflow_run recipe has two workflows"
    out = tmp_path / ".github" / "workflows"
    out.mkdir(parents=True)
    paths = []
    for i, block in enumerate(blocks):
        paths.append(out / f"recipe-{i}.yml")
        paths[-1].write_text(block)
    return paths


def test_workflows_pass_actionlint(tmp_path):
    assert WORKFLOWS, "the self-test workflow is missing"
    assert any("uses: ./" in w.read_text() for w in WORKFLOWS)
    proc = subprocess.run([tool("actionlint"), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recipes = _doc_workflows(tmp_path)
    proc = subprocess.run([tool("actionlint"), "-no-color", *map(str, recipes)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_high(tmp_path):
    targets = [str(ACTION), *map(str, WORKFLOWS), *map(str, _doc_workflows(tmp_path))]
    proc = subprocess.run([tool("zizmor"), "--offline", "--min-severity", "high", *targets], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed" in proc.stderr  # it audited the files (an unparsable file is an error, not a pass)


def _expand(value: str, context: dict[str, str]) -> str:
    """The few `${{ }}` expressions the action uses, resolved the way the runner would."""
    def one(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if re.fullmatch(r"steps\.[\w-]+\.outputs\.[\w-]+", expr):
            return context.get(expr, "")  # a step that did not run or set it: empty, as on a runner
        assert expr in context, f"unexpected expression {expr}"
        return context[expr]

    return re.sub(r"\$\{\{(.*?)\}\}", one, str(value))


def _runs(condition: str, context: dict[str, str], failed: bool) -> bool:
    """Whether a runner runs a step with this ``if:``: the forms the action uses, joined by ``&&``
    (``!cancelled()``, ``X != 'v'``, ``X == 'v'``); without ``!cancelled()`` a step is skipped after a failure."""
    terms = [t.strip() for t in condition.strip().removeprefix("${{").removesuffix("}}").split("&&") if t.strip()]
    if failed and "!cancelled()" not in terms:
        return False
    for term in terms:
        if term == "!cancelled()":
            continue
        match = re.fullmatch(r"([\w.-]+) (!=|==) '([^']*)'", term)
        assert match, f"unexpected condition {term}"
        name, op, value = match.groups()
        if (context.get(name, "") == value) != (op == "=="):
            return False
    return True


def _uses(step: dict, context: dict[str, str], cache_store: Path) -> None:
    """What the `uses:` steps would do: the upload outputs its URL; actions/cache restores from and saves to
    ``cache_store`` (one folder per key, immutable once saved, as GitHub's cache)."""
    name = step["uses"].split("@")[0]
    if name == "actions/upload-artifact":
        context[f"steps.{step['id']}.outputs.artifact-url"] = ARTIFACT_URL
        return
    with_ = {k: _expand(v, context) for k, v in step["with"].items()}
    if name == "actions/cache/restore":
        saved = cache_store / with_["key"]
        if saved.is_dir():
            shutil.copytree(saved, with_["path"], dirs_exist_ok=True)
        context[f"steps.{step['id']}.outputs.cache-hit"] = "true" if saved.is_dir() else "false"
    elif name == "actions/cache/save":
        saved = cache_store / with_["key"]
        if not saved.exists():
            shutil.copytree(with_["path"], saved)
    else:
        raise AssertionError(f"unexpected action {name}")


def _user_site_with_this_interpreters_packages(tmp: Path) -> dict[str, str]:
    """Environment that lets the action's venv see the packages this test runs with.

    The action builds its venv with ``--system-site-packages`` from the interpreter setup-python
    gives it; on a runner pip then downloads what is missing. Offline, the build backend and the
    dependencies must already be visible. When this test runs inside a virtualenv (the README's
    set-up), the venv built from it inherits only the *base* interpreter's site-packages, which
    hold none of them. A venv with system site-packages also reads the user site, so point
    PYTHONUSERBASE at a directory whose site-packages holds a ``.pth`` naming this interpreter's
    site directories: the same packages, in a venv or not, without touching the action's script.
    """
    userbase = tmp / "userbase"
    user_site = Path(sysconfig.get_path("purelib", f"{os.name}_user", vars={"userbase": str(userbase)}))
    user_site.mkdir(parents=True)
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    (user_site / "promote-test-deps.pth").write_text("".join(f"{d}\n" for d in dirs))
    return {"PYTHONUSERBASE": str(userbase)}


def run_action(work: Path, inputs: dict[str, str], tmp: Path, *, cache_store: Path | None = None,
               env: dict[str, str] | None = None) -> tuple[dict[str, str], list[subprocess.CompletedProcess]]:
    """Run the action's bash steps in order, as a runner does (bash -eo pipefail, env files per step); the
    `uses:` steps as ``_uses`` says (the cache in ``cache_store``, default a folder in ``tmp``)."""
    action = yaml.safe_load(ACTION.read_text())
    defaults = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
    context = {f"inputs.{k}": v for k, v in {**defaults, **inputs}.items()}
    context["steps.py.outputs.python-path"] = sys.executable  # what setup-python would provide
    temp = tmp / "runner-temp"
    temp.mkdir(parents=True)
    # A clean environment: no PYTHONPATH (it would make the venv import this checkout's src/).
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GITHUB_", "PROMOTE_", "PIP_")) and k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    base_env.update(_user_site_with_this_interpreters_packages(tmp))
    base_env.update({
        "RUNNER_TEMP": str(temp), "GITHUB_ACTION_PATH": str(REPO), "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(work), "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"), "NO_COLOR": "1",
        # Offline: no index; the build backend and dependencies come from this interpreter's site-packages
        # (the venv is created with --system-site-packages; see _user_site_with_this_interpreters_packages).
        "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_DEPS": "1",
    })
    procs = []
    failed = False
    base_env.update(env or {})
    cache_store = cache_store or tmp / "actions-cache"
    for step in action["runs"]["steps"][1:]:
        if not _runs(str(step.get("if", "")), context, failed):
            continue
        if "uses" in step:
            _uses(step, context, cache_store)
            continue
        out_file = tmp / f"output-{step['id']}"
        env = {**base_env, "GITHUB_OUTPUT": str(out_file)}
        env.update({k: _expand(v, context) for k, v in step.get("env", {}).items()})
        script = tmp / f"{step['id']}.sh"
        script.write_text(step["run"])
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        procs.append(proc)
        outputs = read_outputs(out_file) if out_file.exists() else {}
        context.update({f"steps.{step['id']}.outputs.{k}": v for k, v in outputs.items()})
        failed = failed or proc.returncode != 0
    return {k.rsplit(".", 1)[1]: v for k, v in context.items() if k.startswith("steps.check.outputs.")}, procs


def test_action_steps_run_locally(mini, tmp_path):
    mini.contract("a-pass.yaml")
    mini.contract("b-fail.yaml", candidate="build_hot")
    outputs, procs = run_action(mini.root, {"contract": "*.yaml", "comment": "off", "extra-args": "--no-progress"},
                                tmp_path / "run")
    install, key, check, link = procs
    assert install.returncode == 0, install.stderr
    assert key.returncode == 0, key.stderr
    venv_python = tmp_path / "run" / "runner-temp" / "promote-venv" / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(venv_python), "-c", "import promote; print(promote.__file__)"], capture_output=True,
                           text=True, env=clean)
    assert "promote-venv" in where.stdout, "promote was not installed into the action's private venv"
    assert check.returncode == 1, check.stdout + check.stderr  # worst of pass (0) and fail (1)
    assert outputs["verdict"] == "block" and outputs["exit-code"] == "1"
    reports = outputs["report-json"].splitlines()
    assert len(reports) == 2 and all(Path(p).is_file() for p in reports)
    assert "::error file=b-fail.yaml,line=" in check.stderr
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert summary.count("### ") == 2 and "Promotion allowed" in summary and "Promotion blocked" in summary
    pages = outputs["report-html"].splitlines()  # issue 15: the HTML reports, uploaded and linked
    assert len(pages) == 2 and all(Path(p).read_text().startswith("<!DOCTYPE html>") for p in pages)
    assert link.returncode == 0, link.stderr
    assert summary.rstrip().endswith(f"[Full report: plots (HTML) and JSON]({ARTIFACT_URL}) (workflow artifact)")


def test_action_keeps_compiled_kernels_between_runs(mini, tmp_path):
    """Issue 22: the second run (a fresh venv at the runner's same paths, as on a hosted runner) loads the
    metric kernels the first run compiled and saved with actions/cache, and compiles nothing."""
    mini.contract("a-pass.yaml")
    store = tmp_path / "store"
    inputs = {"contract": "a-pass.yaml", "comment": "off", "extra-args": "--no-progress"}
    checks = []
    for _ in range(2):
        shutil.rmtree(tmp_path / "run", ignore_errors=True)  # a new machine: nothing of the last run but the cache
        outputs, (install, key, check, _) = run_action(mini.root, inputs, tmp_path / "run", cache_store=store,
                                                       env={"NUMBA_DEBUG_CACHE": "1"})
        assert key.returncode == 0 and "::warning" not in key.stdout, key.stdout + key.stderr
        assert check.returncode == 0 and outputs["verdict"] == "pass", check.stdout + check.stderr
        checks.append(check.stdout)
    keys = [p.name for p in store.iterdir()]
    assert len(keys) == 1 and keys[0].startswith("promote-kernels-v1-"), keys
    assert "fused_token_metrics" in "".join(p.name for p in (store / keys[0]).rglob("*.nbi"))
    first, second = checks
    assert re.search(r"\[cache\] data saved to .*fused_token_metrics", first), first[-3000:]
    assert re.search(r"\[cache\] data loaded from .*fused_token_metrics", second), second[-3000:]
    assert "[cache] data saved to" not in second, "the second run compiled a kernel again"


def test_action_kernel_cache_off_keeps_nothing(mini, tmp_path):
    mini.contract("a-pass.yaml")
    store = tmp_path / "store"
    outputs, (_, key, check, _) = run_action(
        mini.root, {"contract": "a-pass.yaml", "comment": "off", "kernel-cache": "false"}, tmp_path / "run",
        cache_store=store)
    assert check.returncode == 0 and outputs["verdict"] == "pass", check.stdout + check.stderr
    assert not store.exists()


def test_action_with_no_matching_contract_exits_2(mini, tmp_path):
    outputs, procs = run_action(mini.root, {"contract": "nothing-*.yaml", "comment": "off"}, tmp_path / "run")
    assert procs[-1].returncode == 2, procs[-1].stderr
    assert outputs["exit-code"] == "2" and outputs["verdict"] == "error"
    assert "nothing-*.yaml" in procs[-1].stderr
