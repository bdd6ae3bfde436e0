"""Kernel specs of a contract (`reference` / `candidate`): typed dataclasses per `kind`, built from
the schema-valid document with referenced files resolved relative to the contract file and checked
to exist, so a typo in a path is a located `validate` error, not a crash at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from promote.contract.fault_specs import FaultSpec, fault_from_dict, parse_inject
from promote.contract.kinds import KINDS
from promote.contract.load import LoadedDocument, Problem


def _injected(faults: tuple[FaultSpec, ...]) -> dict[str, Any]:
    return {"inject": [f.describe() for f in faults]} if faults else {}


@dataclass(frozen=True)
class TorchKernelSpec:
    """`kind: torch` — see schemas/contract.schema.json for each field's meaning."""

    kind: str
    model: str
    model_file: Path | None
    module: str | None
    factory: str
    weights: Path | None
    weights_display: str | None
    precision: str = "fp32"
    device: str = "cpu"
    batch_size: int = 16
    threads: int | None = None
    compile: str = "off"
    compile_mode: str | None = None
    inject: tuple[FaultSpec, ...] = field(default=())  # planted faults (kernels/inject.py)
    chunk: int | None = None  # positions per metric chunk (engine/device_scoring.py); None: sized from V

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "weights": self.weights_display,
                "precision": self.precision, "device": self.device, "batch_size": self.batch_size,
                "compile": self.compile if self.compile_mode is None else f"{self.compile} ({self.compile_mode})",
                **({"chunk": self.chunk} if self.chunk is not None else {}), **_injected(self.inject)}


@dataclass(frozen=True)
class OnnxKernelSpec:
    """`kind: onnx` — an ONNX graph run by onnxruntime."""

    kind: str
    path: Path
    path_display: str
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    graph_optimization: str = "all"
    threads: int | None = None
    batch_size: int = 16
    input_name: str | None = None
    output_name: str | None = None
    inject: tuple[FaultSpec, ...] = field(default=())  # planted faults (kernels/inject.py)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path_display, "providers": list(self.providers),
                "graph_optimization": self.graph_optimization, "threads": self.threads,
                "batch_size": self.batch_size, **_injected(self.inject)}


@dataclass(frozen=True)
class RecordsKernelSpec:
    """`kind: records` — outputs recorded by another engine (a safetensors file or a directory of shards)."""

    kind: str
    path: Path
    path_display: str
    batch_size: int = 16
    inject: tuple[FaultSpec, ...] = field(default=())  # planted faults (kernels/inject.py)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path_display, "batch_size": self.batch_size, **_injected(self.inject)}


@dataclass(frozen=True)
class LaunchSpec:
    """`launch:` of an `openai` kernel: a server promote starts on 127.0.0.1 for one check and stops by
    PID when the check ends (kernels/launch.py). Either ``command`` (an argv with ``{port}``/``{host}``
    placeholders) or ``vllm`` (a model directory served by ``python -m vllm.entrypoints.openai.api_server``
    from the interpreter ``python``, with ``dtype`` and ``args``)."""

    command: tuple[str, ...] | None = None
    vllm: Path | None = None
    vllm_display: str | None = None
    dtype: str = "auto"
    args: tuple[str, ...] = ()
    python: str = "python3"
    env: tuple[tuple[str, str], ...] = ()
    health: str = "/health"
    timeout_s: float = 600.0
    keep_log: bool = False
    log_dir: Path | None = None

    def summary(self) -> dict[str, Any]:
        if self.command is not None:
            return {"command": list(self.command)}
        return {"vllm": self.vllm_display, "dtype": self.dtype, "args": list(self.args)}


@dataclass(frozen=True)
class OpenAIKernelSpec:
    """`kind: openai` — a model behind a serving API (vLLM, OpenAI-compatible, SGLang, TGI) over HTTP.
    ``url`` empty with ``launch`` set: promote starts the server itself and fills in the URL."""

    kind: str
    url: str
    model: str
    api: str = "vllm"
    top_k: int | str = "all"
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 4
    api_key_env: str | None = None
    batch_size: int = 16
    inject: tuple[FaultSpec, ...] = field(default=())  # planted faults (kernels/inject.py)
    launch: LaunchSpec | None = None
    server_log: Path | None = None  # the log of the server at `url`, quoted when it dies

    @property
    def launches(self) -> bool:
        """True when promote starts the server: `launch` given and `url` empty."""
        return self.launch is not None and not self.url

    def summary(self) -> dict[str, Any]:
        where = {"launch": self.launch.summary()} if self.launches and self.launch else {"url": self.url}
        return {"kind": self.kind, **where, "model": self.model, "api": self.api, "top_k": self.top_k,
                "concurrency": self.concurrency, "batch_size": self.batch_size, **_injected(self.inject)}


KernelSpec = TorchKernelSpec | OnnxKernelSpec | RecordsKernelSpec | OpenAIKernelSpec


def resolve_path(doc: LoadedDocument, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (doc.path.parent / path)


def display_path(doc: LoadedDocument, value: str) -> str:
    """A referenced path as a user can open it: relative to the working directory when possible."""
    resolved = resolve_path(doc, value).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def _http_url(url: str) -> bool:
    """http(s) with a host: anything else (``file://``, ``ftp://``) is never fetched (docs/runtime.md)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def kernel_spec(doc: LoadedDocument, role: str, raw: dict[str, Any], problems: list[Problem]) -> KernelSpec:
    """The typed spec of one kernel, with a located problem for every referenced file that is missing."""
    spec: KernelSpec
    plugged = KINDS.get(raw["kind"]).parse if raw["kind"] in KINDS else None
    if plugged is not None:  # a kind plugged in from outside (contract/kinds.py)
        spec = plugged(doc, role, raw, problems)
    elif raw["kind"] in ("onnx", "records"):
        spec = _file_kernel(doc, role, raw, problems)
    elif raw["kind"] == "openai":
        spec = OpenAIKernelSpec(
            kind="openai", url=raw.get("url", ""), model=raw["model"], api=raw.get("api", "vllm"),
            top_k=raw.get("top_k", "all"), timeout_s=float(raw.get("timeout_s", 60.0)),
            retries=raw.get("retries", 3), backoff_s=float(raw.get("backoff_s", 0.5)),
            concurrency=raw.get("concurrency", 4), api_key_env=raw.get("api_key_env"),
            batch_size=raw.get("batch_size", 16), launch=_launch(doc, role, raw, problems),
            server_log=resolve_path(doc, raw["server_log"]).resolve() if raw.get("server_log") else None)
        if spec.url and not _http_url(spec.url):
            problems.append(doc.problem((role, "url"), f"`url: {spec.url[:80]}` is not an http:// or https:// URL "
                                        "with a host; `kind: openai` speaks HTTP only (e.g. http://127.0.0.1:8000/v1)"))
    else:
        spec = _torch_kernel(doc, role, raw, problems)
    if "inject" not in raw:
        return spec
    items, messages = parse_inject(raw["inject"])
    for message in messages:
        problems.append(doc.problem((role, "inject"), f"{message} (docs/calibration.md lists the faults)"))
    if messages:
        return spec
    return replace(spec, inject=tuple(fault_from_dict(item) for item in items))


def _launch(doc: LoadedDocument, role: str, raw: dict[str, Any], problems: list[Problem]) -> LaunchSpec | None:
    """`launch:` typed; a missing URL without `launch`, or `command` and `vllm` together, is a located problem."""
    launch = raw.get("launch")
    if launch is None:
        if not raw.get("url"):
            problems.append(doc.problem((role, "url"), "`url` is empty and there is no `launch`: give the server's URL "
                                        "(e.g. `http://127.0.0.1:8000/v1`) or a `launch:` section that starts one"))
        return None
    if ("command" in launch) == ("vllm" in launch):
        problems.append(doc.problem((role, "launch"), "`launch` needs exactly one of `command` (the server's argv) "
                                    "and `vllm` (a model directory vLLM serves)"))
        return None
    model_dir = display = None
    if "vllm" in launch:
        model_dir, display = resolve_path(doc, launch["vllm"]).resolve(), display_path(doc, launch["vllm"])
        if not raw.get("url") and not (model_dir / "config.json").is_file():
            problems.append(doc.problem((role, "launch", "vllm"), f"model directory `{launch['vllm']}` has no "
                                        f"config.json (looked in {model_dir}); paths are relative to the contract "
                                        "file"))
    python = os.path.expanduser(str(launch.get("python", "python3")))
    if os.sep in python and not os.path.isabs(python):
        python = str(resolve_path(doc, python))
    log_dir = resolve_path(doc, launch["log_dir"]).resolve() if "log_dir" in launch else None
    return LaunchSpec(
        command=tuple(map(str, launch["command"])) if "command" in launch else None, vllm=model_dir,
        vllm_display=display, dtype=launch.get("dtype", "auto"), args=tuple(map(str, launch.get("args", ()))),
        python=python, env=tuple((str(k), str(v)) for k, v in launch.get("env", {}).items()),
        health=launch.get("health", "/health"), timeout_s=float(launch.get("timeout_s", 600.0)),
        keep_log=bool(launch.get("keep_log", False)), log_dir=log_dir)


def _file_kernel(doc: LoadedDocument, role: str, raw: dict[str, Any],
                 problems: list[Problem]) -> OnnxKernelSpec | RecordsKernelSpec:
    path = resolve_path(doc, raw["path"]).resolve()
    display = display_path(doc, raw["path"])
    if raw["kind"] == "onnx":
        if not path.is_file():
            problems.append(doc.problem((role, "path"), f"ONNX file `{raw['path']}` not found (looked for {path}); "
                                        "paths are relative to the contract file"))
        return OnnxKernelSpec(
            kind="onnx", path=path, path_display=display,
            providers=tuple(raw.get("providers", OnnxKernelSpec.providers)),
            graph_optimization=raw.get("graph_optimization", "all"), threads=raw.get("threads"),
            batch_size=raw.get("batch_size", 16), input_name=raw.get("input_name"),
            output_name=raw.get("output_name"),
        )
    if not path.exists():
        problems.append(doc.problem((role, "path"), f"records `{raw['path']}` not found (looked for {path}); "
                                    "give a .safetensors file or a directory of shards, relative to the contract file"))
    elif path.is_dir() and not any(path.glob("*.safetensors")):
        problems.append(doc.problem((role, "path"), f"records directory `{raw['path']}` has no *.safetensors shards"))
    return RecordsKernelSpec(kind="records", path=path, path_display=display, batch_size=raw.get("batch_size", 16))


def _torch_kernel(doc: LoadedDocument, role: str, raw: dict[str, Any], problems: list[Problem]) -> TorchKernelSpec:
    target, _, factory = raw["model"].rpartition(":")
    model_file = module = None
    if target.endswith(".py") or "/" in target or os.sep in target:
        model_file = resolve_path(doc, target).resolve()
        if not model_file.is_file():
            problems.append(doc.problem((role, "model"), f"model file `{target}` not found (looked for "
                                        f"{model_file}); paths are relative to the contract file"))
    else:
        module = target
    weights = weights_display = None
    if "weights" in raw:
        weights = resolve_path(doc, raw["weights"]).resolve()
        weights_display = display_path(doc, raw["weights"])
        if not weights.is_file():
            problems.append(doc.problem((role, "weights"), f"weights file `{raw['weights']}` not found (looked for "
                                        f"{weights}); paths are relative to the contract file"))
    compile_ = raw.get("compile", "off")
    compile_ = "off" if compile_ is False else compile_  # YAML reads a bare `off` as false
    if "compile_mode" in raw and compile_ == "off":
        problems.append(doc.problem((role, "compile_mode"), "`compile_mode` needs `compile: inductor`", key=True))
    return TorchKernelSpec(
        kind="torch", model=raw["model"], model_file=model_file, module=module, factory=factory,
        weights=weights, weights_display=weights_display, precision=raw.get("precision", "fp32"),
        device=raw.get("device", "cpu"), batch_size=raw.get("batch_size", 16), threads=raw.get("threads"),
        compile=compile_, compile_mode=raw.get("compile_mode"), chunk=raw.get("chunk"),
    )
