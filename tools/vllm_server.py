"""Start and stop a vLLM OpenAI-compatible server on 127.0.0.1 that outlives one check.

For one check, a contract's `launch:` does all of this itself (docs/runtime.md, "One command");
this helper is for a server shared by several checks (tests start one per session). The CPU build
of vLLM needs its own venv (tools/vllm_env.sh), a module entry point instead of `vllm serve`,
offline environment variables and a free port, and a server left running must be stopped by PID,
never by name (promote/kernels/launch.py does the process work for both). People use:

    python tools/vllm_server.py start examples/tiny_llama/model --dtype float32
    python tools/vllm_server.py stop --pid-file /tmp/promote-vllm-PORT.pid

``start`` prints ``PROMOTE_VLLM_URL=http://127.0.0.1:PORT/v1``, ``PROMOTE_VLLM_PID_FILE=...`` and
``PROMOTE_VLLM_LOG=...`` once ``/health`` answers 200: every job gets its own pid file and log
(``--pid-file``/``--log`` choose them). ``stop`` removes the pid file and the log (``--keep-log``
keeps it). Flags default to the full-vocabulary mode (``--max-logprobs -1 --logprobs-mode
raw_logits``) that makes every stage-1 metric exact through HTTP (docs/runtime.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from promote.kernels import launch  # noqa: E402 - after the path so a plain checkout works

ENV = {"VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
       "DO_NOT_TRACK": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def vllm_python() -> str:
    """The pinned vLLM venv's interpreter, building the venv first when it is missing (minutes)."""
    done = subprocess.run(["bash", str(HERE / "vllm_env.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    return launch.free_port()


@dataclass
class Server:
    pid: int
    port: int
    name: str
    log: Path
    pid_file: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def alive(self) -> bool:
        return launch.alive(self.pid)

    def log_tail(self, chars: int = launch.TAIL_CHARS) -> str:
        return launch.tail(self.log, chars)

    def stop(self, timeout: float = 30.0, *, keep_log: bool = True) -> None:
        stop(self.pid, timeout=timeout)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        if not keep_log:
            self.log.unlink(missing_ok=True)


def start(model_dir: str | os.PathLike[str], *, dtype: str = "float32", name: str = "tiny-llama",
          max_logprobs: int = -1, logprobs_mode: str = "raw_logits", port: int | None = None,
          log: str | os.PathLike[str] | None = None, pid_file: str | os.PathLike[str] | None = None,
          timeout: float = 600.0, extra: list[str] | None = None) -> Server:
    """Start the server in a new session and wait for ``/health``; stop it and raise (with the log's
    tail) if it dies or times out. Log and pid file are per job: ``promote-vllm-<pid>-<port>.*`` in
    the temporary directory unless given."""
    python = vllm_python()
    port = port or launch.free_port()
    args = ["--max-model-len", "512", "--max-logprobs", str(max_logprobs), "--logprobs-mode", logprobs_mode,
            "--enforce-eager", *(extra or [])]
    argv = launch.vllm_argv(python, model_dir, port=port, dtype=dtype, served_name=name, args=args)
    spawned = launch.spawn(argv, port=port, env=ENV, job="vllm", log=Path(log) if log else None,
                           pid_file=Path(pid_file) if pid_file else None)
    launch._RUNNING.pop(spawned.pid, None)  # outlives this process by design: no atexit stop
    server = Server(spawned.pid, port, name, spawned.log, spawned.pid_file)
    try:
        launch.wait_healthy(spawned, timeout=timeout)
    except launch.LaunchError as exc:
        raise RuntimeError(f"vLLM ({dtype}, {model_dir}): {exc}") from None
    return server


def stop(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM the server (it stops its engine), SIGKILL its process group after ``timeout``."""
    launch.stop(pid, timeout=timeout)


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
    s.add_argument("--pid-file", help="default: promote-vllm-<pid>-<port>.pid in the temporary directory")
    s.add_argument("--log", help="default: promote-vllm-<pid>-<port>.log beside the pid file")
    t = sub.add_parser("stop", help="stop the server whose PID is in --pid-file")
    t.add_argument("--pid-file", required=True)
    t.add_argument("--keep-log", action="store_true", help="keep the server's log (removed by default)")
    args = parser.parse_args(argv)
    if args.command == "start":
        if args.dtype == "bfloat16" and launch.host_has_amx():
            print("warning: bfloat16 on a CPU with AMX: vLLM 0.32 dies on 3- and 4-token prompts; keep them out of "
                  "the eval set (docs/runtime.md, \"bf16 vLLM on AMX CPUs\")", file=sys.stderr)
        server = start(args.model_dir, dtype=args.dtype, name=args.name, max_logprobs=args.max_logprobs,
                       logprobs_mode=args.logprobs_mode, port=args.port, log=args.log, pid_file=args.pid_file)
        print(f"PROMOTE_VLLM_URL={server.url}")
        print(f"PROMOTE_VLLM_PID_FILE={server.pid_file}")
        print(f"PROMOTE_VLLM_LOG={server.log}")
        return 0
    pid_file = Path(args.pid_file)
    lines = pid_file.read_text().split("\n")
    launch.stop(int(lines[0].strip()))
    pid_file.unlink(missing_ok=True)
    if len(lines) > 1 and lines[1].strip() and not args.keep_log:
        Path(lines[1].strip()).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
