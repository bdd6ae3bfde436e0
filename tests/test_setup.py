"""The README's two set-up commands (tools/setup.sh) and the torch they install (tools/torch_choice.py).

A newcomer's first install once named a PyTorch index that a PyPI-only machine cannot reach (minutes
of retries), while CI installed from the default index; and on an ordinary Linux machine PyPI's
torch is the CUDA build, several GB a machine without a GPU never uses. The choice is tested here with
its probes replaced (what a machine has is not up to a test), plus the real GPU probe against a fake
`nvidia-smi`; the whole install is what .ci/run runs.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("torch_choice", REPO / "tools" / "torch_choice.py")
torch_choice = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_choice)
choose, TORCH, CPU_INDEX = torch_choice.choose, torch_choice.TORCH, torch_choice.CPU_INDEX


def probes(*, gpu=False, installed=None, pulls_cuda=True, index_up=True):
    asked: list[str] = []

    def note(name, value):
        def probe(*_args):
            asked.append(name)
            return value
        return probe

    return asked, {"gpu": note("gpu", gpu), "installed": note("installed", installed),
                   "pulls_cuda": note("pulls_cuda", pulls_cuda), "index_up": note("index_up", index_up)}


@pytest.mark.parametrize(("machine", "expected"), [
    ({"installed": "2.13.0+cpu"}, []),  # a torch the venv has is kept, whatever build
    ({"gpu": True}, [TORCH]),  # a GPU: the default (CUDA) build
    ({"pulls_cuda": False}, [TORCH]),  # a CPU wheel pip finds itself (this machine), macOS, Windows
    ({"pulls_cuda": True, "index_up": True}, [TORCH, "--index-url", CPU_INDEX]),  # an ordinary Linux machine
    ({"pulls_cuda": True, "index_up": False}, None),  # PyPI only, no CPU wheel: stop, never CUDA
])
def test_cpu_torch_unless_there_is_a_gpu(machine, expected):
    _, fakes = probes(**machine)
    args, reason = choose("python", env={}, **fakes)
    assert args == expected, reason
    if expected is None:
        assert "PROMOTE_TORCH=default" in reason and CPU_INDEX in reason and "CUDA" in reason


def test_a_gpu_machine_never_probes_the_cpu_index_and_an_override_decides_alone():
    asked, fakes = probes(gpu=True)
    assert choose("python", env={}, **fakes)[0] == [TORCH] and "index_up" not in asked
    for value, expected in (("keep", []), ("cpu", [TORCH, "--index-url", CPU_INDEX]), ("default", [TORCH]),
                            ("cuda12", None)):
        asked, fakes = probes(gpu=True, installed="2.13.0")
        assert choose("python", env={"PROMOTE_TORCH": value}, **fakes)[0] == expected, value
        assert asked == []


def _fake_nvidia_smi(tmp_path, monkeypatch, *, code: int, out: str) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{out}'\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_gpu_probe_reads_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, code=0, out="GPU 0: NVIDIA H100 (UUID: GPU-1)")
    assert torch_choice.has_gpu() is True
    _fake_nvidia_smi(tmp_path, monkeypatch, code=9, out="NVIDIA-SMI has failed: no driver")  # a driver-less box
    assert torch_choice.has_gpu() is False
    _fake_nvidia_smi(tmp_path, monkeypatch, code=0, out="No devices found.")
    assert torch_choice.has_gpu() is False


def test_torch_choice_script_prints_pip_arguments_and_the_reason():
    env = {**os.environ, "PROMOTE_TORCH": "cpu"}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "torch_choice.py"), sys.executable], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.split() == [TORCH, "--index-url", CPU_INDEX]
    assert proc.stderr.startswith("setup: torch: PROMOTE_TORCH=cpu")
    env["PROMOTE_TORCH"] = "cuda12"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "torch_choice.py"), sys.executable], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and proc.stdout == "" and "use cpu, default or keep" in proc.stderr


def test_setup_refuses_an_unknown_target_before_touching_anything(tmp_path):
    env = {**os.environ, "PROMOTE_VENV": str(tmp_path / "venv")}
    proc = subprocess.run(["bash", str(REPO / "tools" / "setup.sh"), "everything"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "usage: bash tools/setup.sh example | test" in proc.stderr
    assert not (tmp_path / "venv").exists()


def test_readme_set_up_is_the_two_commands_and_ci_runs_the_same_test_entry():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "bash tools/setup.sh example" in readme and "bash tools/setup.sh test" in readme
    assert "download.pytorch.org" not in readme  # the CPU index is setup's fallback, not a command to type
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'bash tools/setup.sh test 2>&1 | tee "$log"' in ci and "no test ran" in ci
