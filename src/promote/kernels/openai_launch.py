"""The `openai` kernel's side of `launch:`: start its server, refuse what would kill it, say when it died.

Kept apart from openai_kernel.py (HTTP scoring) and launch.py (processes, no contract knowledge) so
each stays one job: this module turns a contract's `launch:` into a running server and turns a
server's death into a message a user can act on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from promote.contract.kernel_specs import LaunchSpec, OpenAIKernelSpec
from promote.errors import EvaluationError, UsageError
from promote.kernels import launch

#: Prompt lengths that kill vLLM 0.32's CPU engine in bfloat16 on CPUs with AMX (docs/runtime.md).
AMX_FATAL_LENGTHS = (3, 4)
AMX_NOTE = ("vLLM 0.32's CPU backend dies on 3- and 4-token prompts in bfloat16 on CPUs with AMX "
            "(`Illegal instruction` in cpu_attention_with_kv_cache; docs/runtime.md, \"bf16 vLLM on AMX CPUs\")")


def _argv(spec: OpenAIKernelSpec, launch_spec: LaunchSpec, port: int) -> list[str]:
    if launch_spec.command is not None:
        return [part.replace("{port}", str(port)).replace("{host}", launch.HOST) for part in launch_spec.command]
    return launch.vllm_argv(launch_spec.python, launch_spec.vllm or "", port=port, dtype=launch_spec.dtype,
                            served_name=spec.model, args=launch_spec.args)


def start_server(spec: OpenAIKernelSpec, role: str, label: str) -> launch.Server:
    """Start the server `launch:` describes on a free loopback port and wait for its health check.
    A missing program is a usage error (exit 2); a server that exits or never gets healthy, an
    evaluation error (exit 3) quoting its log."""
    from promote import console

    launch_spec = spec.launch
    assert launch_spec is not None
    port = launch.free_port()
    argv = _argv(spec, launch_spec, port)
    if shutil.which(argv[0]) is None:
        hint = (" (build the pinned vLLM venv with `bash tools/vllm_env.sh`, or set `launch.python`, e.g. "
                "through ${PROMOTE_VLLM_PYTHON})" if launch_spec.vllm is not None else "")
        raise UsageError(f"{label}: `launch` cannot run `{argv[0]}`: not found or not executable{hint}")
    env = dict(launch.VLLM_ENV) if launch_spec.vllm is not None else {}
    env.update(dict(launch_spec.env))
    try:
        server = launch.spawn(argv, port=port, env=env, job=role, log_dir=launch_spec.log_dir)
    except (launch.LaunchError, OSError) as exc:
        raise UsageError(f"{label}: `launch` could not start the server: {exc}") from None
    console.message(f"promote: started the {role} server (pid {server.pid}) at {server.url}; log {server.log}; "
                    f"waiting for {launch_spec.health} (at most {launch_spec.timeout_s:g} s)")
    try:
        launch.wait_healthy(server, path=launch_spec.health, timeout=launch_spec.timeout_s)
    except launch.LaunchError as exc:
        raise EvaluationError(f"{label}: {exc}") from None
    except BaseException:  # Ctrl-C/SIGTERM while waiting: the server goes with us
        server.stop(keep_log=False)
        raise
    return server


def served_dtype(dtype: str, model_dir: Path | None) -> str:
    """The dtype vLLM computes in: ``dtype``, or for `auto` the model config's own."""
    if dtype != "auto" or model_dir is None:
        return dtype
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "auto"
    return str(config.get("torch_dtype") or config.get("dtype") or "auto") if isinstance(config, dict) else "auto"


def refuse_amx_short_prompts(spec: OpenAIKernelSpec, label: str, samples: Iterable[Any], *,
                             cpuinfo: str | None = None) -> None:
    """Refuse (exit 2) an eval set with 3- or 4-token samples before a launched bf16 vLLM on an AMX CPU
    sees them: each would kill the engine and end the check with nothing measured. The samples are
    not padded or trimmed, which would change what is measured; the user decides."""
    launch_spec = spec.launch
    if launch_spec is None or launch_spec.vllm is None:
        return
    refuse_amx_fatal(served_dtype(launch_spec.dtype, launch_spec.vllm), label, samples, cpuinfo=cpuinfo,
                     where="the launched server", dtype_key="launch.dtype")


def refuse_amx_fatal(dtype: str, label: str, samples: Iterable[Any], *, cpuinfo: str | None = None,
                     where: str, dtype_key: str) -> None:
    """The refusal itself, for any vLLM promote starts (`launch:` or `kind: vllm`) computing in ``dtype``."""
    if dtype not in ("bfloat16", "bf16"):
        return
    short = [s for s in samples if len(s.input_ids) in AMX_FATAL_LENGTHS]
    if not short or not launch.host_has_amx(cpuinfo):
        return
    named = ", ".join(f"`{s.id}` ({len(s.input_ids)} tokens)" for s in short[:5])
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    raise UsageError(f"{label}: {len(short)} eval sample(s) are 3 or 4 tokens long: {named}{more}. {AMX_NOTE}, "
                     "and this machine's CPU has AMX (`amx_tile` in /proc/cpuinfo), so the first of them would "
                     f"kill {where}. Drop or lengthen those samples in the eval set (promote does not "
                     f"alter prompts: that would change what is measured), or use `{dtype_key}: float32`")


def died_message(kernel: Any, failure: Exception, what: str, tokens: int | None) -> str:
    """"The server answered N requests, then stopped answering …": for a launched server, how it
    ended and the last lines of its log (kept)."""
    count = kernel._answered
    text = (f"{what} at {kernel.endpoint}: the server answered {count} request{'s' if count != 1 else ''}, then "
            f"stopped answering ({failure}): it died or was stopped")
    short = {sid: n for sid, n in getattr(kernel, "_pending", {}).items() if n in AMX_FATAL_LENGTHS}
    if tokens in AMX_FATAL_LENGTHS:
        text += f". This prompt has {tokens} tokens: {AMX_NOTE}"
    elif short:  # another request in flight may be the one that killed it
        named = ", ".join(f"`{sid}` ({n} tokens)" for sid, n in list(short.items())[:5])
        text += f". Unanswered when it died: {named}; {AMX_NOTE}"
    server = kernel.server
    if server is not None:
        text += (f". The server promote launched {server.describe_death()}; its log is kept at {server.log}, "
                 f"last lines:\n{server.log_tail()}")
    elif kernel.spec.server_log is not None:
        tail = launch.tail(kernel.spec.server_log)
        text += (f". Last lines of its log {kernel.spec.server_log} (`server_log`):\n{tail}" if tail else
                 f". Its log {kernel.spec.server_log} (`server_log`) cannot be read")
    return text
