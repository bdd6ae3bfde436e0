"""Start and stop a vLLM OpenAI-compatible server on 127.0.0.1 for promote's `openai` kernel.

Why a helper: the CPU build of vLLM needs its own venv (tools/vllm_env.sh), a module entry point
instead of `vllm serve`, offline environment variables and a free port, and a server left running
must be stopped by PID, never by name. Tests import :func:`start`; people use the command line:

    python tools/vllm_server.py start examples/tiny_llama/model --dtype float32 --pid-file /tmp/vllm.pid
    python tools/vllm_server.py stop --pid-file /tmp/vllm.pid

``start`` prints ``PROMOTE_VLLM_URL=http://127.0.0.1:PORT/v1`` once ``/health`` answers 200.
Flags default to the full-vocabulary mode (``--max-logprobs -1 --logprobs-mode raw_logits``) that
makes every stage-1 metric exact through HTTP (docs/runtime.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = {"VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
       "DO_NOT_TRACK": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def vllm_python() -> str:
    """The pinned vLLM venv's interpreter, building the venv first when it is missing (minutes)."""
    done = subprocess.run(["bash", str(HERE / "vllm_env.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    pid: int
    port: int
    name: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def stop(self, timeout: float = 30.0) -> None:
        stop(self.pid, timeout=timeout)


def start(model_dir: str | os.PathLike[str], *, dtype: str = "float32", name: str = "tiny-llama",
          max_logprobs: int = -1, logprobs_mode: str = "raw_logits", port: int | None = None,
          log: str | os.PathLike[str] | None = None, timeout: float = 600.0, extra: list[str] | None = None) -> Server:
    """Start the server in a new session and wait for ``/health``; stop it and raise if it dies or times out."""
    python = vllm_python()
    port = port or free_port()
    log_path = Path(log) if log else Path(f"/tmp/promote-vllm-{port}.log")
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--dtype", dtype, "--max-model-len", "512", "--max-logprobs", str(max_logprobs),
           "--logprobs-mode", logprobs_mode, "--served-model-name", name, "--enforce-eager", *(extra or [])]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(ENV)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(proc.pid, port, name, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with {proc.returncode} before /health; log: {log_path}\n"
                               + log_path.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"{server.base}/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"vLLM did not answer /health within {timeout:.0f} s; log: {log_path}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone once reaped
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM the server (it stops its engine), SIGKILL its process group after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.2)
    # The session start() created holds only what we started: the server and its engine children.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="start a server and print PROMOTE_VLLM_URL=...")
    s.add_argument("model_dir")
    s.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    s.add_argument("--name", default="tiny-llama", help="served model name (the contract's `model`)")
    s.add_argument("--max-logprobs", type=int, default=-1, help="-1: the whole vocabulary may be requested")
    s.add_argument("--logprobs-mode", default="raw_logits")
    s.add_argument("--port", type=int)
    s.add_argument("--pid-file", required=True)
    t = sub.add_parser("stop", help="stop the server whose PID is in --pid-file")
    t.add_argument("--pid-file", required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        server = start(args.model_dir, dtype=args.dtype, name=args.name, max_logprobs=args.max_logprobs,
                       logprobs_mode=args.logprobs_mode, port=args.port)
        Path(args.pid_file).write_text(str(server.pid))
        print(f"PROMOTE_VLLM_URL={server.url}")
        return 0
    pid = int(Path(args.pid_file).read_text().strip())
    stop(pid)
    Path(args.pid_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
