"""Which torch to install into a venv, for tools/setup.sh: a CPU build unless the machine has a GPU.

Why a script of its own: on Linux, PyPI's ``torch`` is the CUDA build (several GB of ``nvidia-*``
wheels), which a machine without a GPU should never download; PyTorch's CPU index has the CPU build
but a machine that reaches only PyPI cannot reach it (a README command naming it retried for minutes
there); and some machines carry a CPU wheel that pip finds through its own configuration. So:

1. ``PROMOTE_TORCH`` decides when set: ``cpu`` (the CPU index), ``default`` (plain pip, any build it
   picks), ``keep`` (install nothing).
2. A torch the venv already imports is kept.
3. A GPU (``nvidia-smi -L`` lists one): plain ``pip install torch==VERSION``, the CUDA build it wants.
4. Otherwise, if what plain pip would install pulls no ``nvidia-*`` package (a CPU wheel pip finds on
   this machine, or a platform whose PyPI torch is CPU-only: macOS, Windows, aarch64): plain pip.
5. Otherwise, if the CPU index answers: ``--index-url`` it.
6. Otherwise: stop with what to do, rather than pull a CUDA build onto a machine without a GPU.

Usage: ``python tools/torch_choice.py VENV_PYTHON`` prints the arguments for ``pip install`` on one
line (nothing: keep the installed torch); the reason goes to stderr; exit 1 when there is no CPU build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_gpu() -> bool:
    """True when ``nvidia-smi -L`` runs and lists a GPU (a driver without a device lists none)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "GPU" in proc.stdout


def has_torch(python: str) -> str | None:
    """The torch version ``python`` imports, or None."""
    try:
        proc = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                              text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def plain_pulls_cuda(python: str) -> bool:
    """Whether plain ``pip install TORCH`` would install ``nvidia-*`` packages (a dry run: metadata only)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run([python, "-m", "pip", "install", TORCH, "--dry-run", "--quiet", "--report",
                               str(report)], capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0 or not report.is_file():
            return True  # unknown: do not risk it
        items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    names = [str(item.get("metadata", {}).get("name", "")).lower() for item in items]
    return any(name.startswith("nvidia-") for name in names)


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=15) as response:  # noqa: S310 - fixed https URL
            return response.status == 200
    except (OSError, ValueError):
        return False


def choose(python: str, *, env: dict[str, str], gpu: Callable[[], bool] = has_gpu,
           installed: Callable[[str], str | None] = has_torch, pulls_cuda: Callable[[str], bool] = plain_pulls_cuda,
           index_up: Callable[[str], bool] = reachable) -> tuple[list[str] | None, str]:
    """``(pip install arguments or [] to keep, reason)``; ``(None, reason)`` when no CPU build is reachable."""
    forced = env.get("PROMOTE_TORCH", "").strip().lower()
    if forced == "keep":
        return [], "PROMOTE_TORCH=keep: torch left as it is"
    if forced == "cpu":
        return [TORCH, "--index-url", CPU_INDEX], f"PROMOTE_TORCH=cpu: the CPU build from {CPU_INDEX}"
    if forced == "default":
        return [TORCH], "PROMOTE_TORCH=default: the build pip picks"
    if forced:
        return None, f"PROMOTE_TORCH={forced!r}: use cpu, default or keep"
    version = installed(python)
    if version:
        return [], f"torch {version} is installed already: kept"
    if gpu():
        return [TORCH], "a GPU is present (nvidia-smi): the default build, with CUDA"
    if not pulls_cuda(python):
        return [TORCH], "no GPU; pip's own sources have a torch without CUDA"
    if index_up(CPU_INDEX):
        return [TORCH, "--index-url", CPU_INDEX], f"no GPU: the CPU build from {CPU_INDEX}"
    return None, (f"no GPU, and no CPU build of torch is reachable: PyPI's torch for this platform is the CUDA build "
                  f"(several GB of nvidia-* packages) and {CPU_INDEX} does not answer. Install a CPU torch into this "
                  "venv yourself (e.g. `pip install torch-<version>+cpu-<platform>.whl`) and run this again, or set "
                  "PROMOTE_TORCH=default to take the CUDA build anyway")


def main(argv: list[str]) -> int:
    python = argv[1] if len(argv) > 1 else sys.executable
    args, reason = choose(python, env=dict(os.environ))
    print(f"setup: torch: {reason}", file=sys.stderr)
    if args is None:
        return 1
    print(" ".join(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
