"""Shared fixtures: a miniature project (model file, eval set, contract writer) in a temp dir, so CLI
tests exercise real torch kernels in milliseconds; the shipped example has its own end-to-end test."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def unavailable(message: str) -> None:
    """A service or tool a test needs is missing: outside CI the test skips; under CI=true it fails, because
    `.ci/run` installs everything and a core feature is never skipped there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (required under CI=true: .ci/run installs it)")
    pytest.skip(message)

MINI_MODEL = '''
import torch


class Mini(torch.nn.Module):
    """Embedding → linear: a causal LM in the loosest sense, enough to produce real logits."""

    def __init__(self, scale: float = 1.0, noise: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(16, 8, generator=g))
        self.out = torch.nn.Parameter(torch.randn(8, 16, generator=g))
        self.scale = scale
        self.noise = noise

    def forward(self, ids):
        logits = (self.emb[ids] @ self.out) * self.scale
        if self.noise:
            g = torch.Generator().manual_seed(1)
            logits = logits + self.noise * torch.randn(logits.shape, generator=g)
        return logits


def build():
    return Mini()


def build_hot():
    return Mini(scale=1.5)


def build_constant():
    class Constant(torch.nn.Module):
        def forward(self, ids):
            return torch.zeros(*ids.shape, 16)
    return Constant()


def build_nan():
    class NaNs(Mini):
        def forward(self, ids):
            out = super().forward(ids)
            out[:, 1, 3] = float("nan")
            return out
    return NaNs()


def build_batchy():
    """Batch-variant like a split-K GEMM: logits shift by ~1e-4 with the batch size (a legit floor)."""
    class Batchy(Mini):
        def forward(self, ids):
            out = super().forward(ids)
            wiggle = torch.linspace(-1.0, 1.0, out.shape[-1])
            return out + 1e-4 * (ids.shape[0] % 4) * wiggle
    return Batchy()


def build_broken():
    raise RuntimeError("factory exploded")


def build_wrong_shape():
    class Flat(torch.nn.Module):
        def forward(self, ids):
            return torch.zeros(ids.shape[0], 16)
    return Flat()
'''


class MiniProject:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "model.py").write_text(MINI_MODEL)
        lines = []
        for i in range(24):
            ids = [(i * 7 + t * 3) % 16 for t in range(5 + i % 6)]
            lines.append(json.dumps({"id": f"s{i:02d}", "input_ids": ids, "tags": {"group": "ab"[i % 2]}}))
        (root / "eval.jsonl").write_text("\n".join(lines) + "\n")

    def contract(self, name: str = "contract.yaml", *, candidate: str = "build", reference: str = "build",
                 precision: str = "fp32",
                 clauses: list[dict] | None = None, numerical: dict | None = None,
                 extra: dict | None = None) -> Path:
        doc = {
            "version": 1,
            "name": "mini",
            "reference": {"kind": "torch", "model": f"model.py:{reference}", "precision": "fp32", "batch_size": 5},
            "candidate": {"kind": "torch", "model": f"model.py:{candidate}", "precision": precision,
                          "batch_size": 5},
            "data": {"path": "eval.jsonl"},
            "numerical": {**(numerical or {}), "clauses": clauses or [
                {"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1e-3},
                {"id": "agree", "metric": "argmax_agree", "stat": "mean", "min": 0.99},
                {"id": "finite", "metric": "nonfinite", "stat": "max", "max": 0},
            ]},
        }
        doc.update(extra or {})
        path = self.root / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path


@pytest.fixture
def mini(tmp_path: Path) -> MiniProject:
    return MiniProject(tmp_path)


EXAMPLE_SLICES = REPO / "examples" / "tiny_lm" / "slices.yaml"


@pytest.fixture(scope="session")
def cyrillic_fault_run(tmp_path_factory) -> dict:
    """The shipped slice example against its Cyrillic-only fault, run once per session (~30-60 s):
    exit code, JSON report (stdout) and the HTML report written by ``--output html=``."""
    from click.testing import CliRunner

    from promote.cli import cli

    out = tmp_path_factory.mktemp("cyrillic")
    html = out / "report.html"
    result = CliRunner().invoke(cli, ["check", str(EXAMPLE_SLICES), "--format", "json", "--all-stages",
                                      "--output", f"html={html}"],
                                env={"PROMOTE_CANDIDATE": "faults.py:build_cyrillic_fault"}, catch_exceptions=False)
    return {"exit_code": result.exit_code, "report": json.loads(result.stdout), "html": html}


# --- a real vLLM server (tools/vllm_server.py), started once per session per configuration ---------

def _vllm_tools():
    import importlib.util
    import sys

    if "promote_vllm_server" in sys.modules:
        return sys.modules["promote_vllm_server"]
    spec = importlib.util.spec_from_file_location("promote_vllm_server", REPO / "tools" / "vllm_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["promote_vllm_server"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def vllm_python_or_skip() -> str:
    """The pinned vLLM venv's interpreter, built on first use. A machine that cannot build it skips outside
    CI; under CI=true that is a failure, never a skip."""
    try:
        return _vllm_tools().vllm_python()
    except Exception as exc:  # noqa: BLE001 - any build failure
        unavailable(f"the vLLM venv could not be built: {exc}")


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The vLLM venv's interpreter for tests that run the engine themselves (`kind: vllm`)."""
    return vllm_python_or_skip()


class VllmServer:
    """A real vLLM server for tests (tools/vllm_server.py), proven to answer a real request before any
    test uses it: :meth:`ensure` runs before every test that has it among its fixtures
    (``pytest_runtest_call`` below) and restarts the server on the same port when its engine died
    (a fixture built on its URL, a proxy say, keeps working). A failing test gets the log's tail."""

    WARM_PROMPT = list(range(8))  # never 3 or 4 tokens: they kill bf16 vLLM on AMX CPUs (docs/runtime.md)

    def __init__(self, model_dir: Path, kwargs: dict) -> None:
        self.model_dir, self.kwargs = model_dir, dict(kwargs)
        self.server = None
        self.restarts = 0

    def __getattr__(self, name: str):  # url, base, port, pid, name, log of the running server
        if name == "server" or self.__dict__.get("server") is None:
            raise AttributeError(name)
        return getattr(self.server, name)

    def start(self) -> None:
        tools = _vllm_tools()
        port = self.server.port if self.server is not None else None
        self.server = tools.start(self.model_dir, port=port, **self.kwargs)

    def answers(self) -> str | None:
        """None when a real scoring request (8 tokens, prompt log-probs) gets a 200 with choices, else why not."""
        import requests

        try:
            answer = requests.post(f"{self.server.url}/completions", timeout=180, json={
                "model": self.server.name, "prompt": self.WARM_PROMPT, "max_tokens": 1, "prompt_logprobs": 1})
        except requests.RequestException as exc:
            return f"no answer ({exc})"
        if answer.status_code != 200 or not answer.json().get("choices"):
            return f"HTTP {answer.status_code}: {answer.text[:300]}"
        return None

    def ensure(self) -> None:
        """Warm the server with a real request; restart it once if it does not answer (engine died)."""
        why = self.answers()
        if why is None:
            return
        tail = self.server.log_tail()
        self.server.stop()
        self.restarts += 1
        self.start()
        again = self.answers()
        if again is not None:
            pytest.fail(f"vLLM ({self.kwargs}) did not answer a warm-up request ({why}), nor after a restart "
                        f"({again}); log {self.server.log}:\n{self.server.log_tail()}\n--- before the restart:\n"
                        f"{tail}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(keep_log=False)


def start_vllm(request: pytest.FixtureRequest, model_dir: Path, **kwargs) -> VllmServer:
    """Start vLLM (building its venv on first use), prove it answers, and stop it by PID when the
    fixture ends. Outside CI a machine that cannot build the venv skips; under CI=true that is a
    failure, never a skip."""
    vllm_python_or_skip()
    handle = VllmServer(model_dir, kwargs)
    handle.start()
    request.addfinalizer(handle.stop)
    handle.ensure()
    return handle


def _vllm_handles(item: pytest.Item) -> list[VllmServer]:
    return [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, VllmServer)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Before the test body: every vLLM server it uses answers a real request (restarted if its engine died)."""
    for handle in _vllm_handles(item):
        handle.ensure()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A failed test that used a vLLM server shows the server's log tail (and how often it was restarted)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for handle in _vllm_handles(item):
            if handle.server is not None:
                report.sections.append((f"vLLM server log tail ({handle.server.log}, restarts {handle.restarts})",
                                        handle.server.log_tail()))


@pytest.fixture(scope="session")
def vllm_fp32(request: pytest.FixtureRequest):
    """vLLM fp32 with the whole vocabulary as raw logits (--max-logprobs -1 --logprobs-mode raw_logits)."""
    return start_vllm(request, REPO / "examples" / "tiny_llama" / "model", dtype="float32")


@pytest.fixture(scope="session")
def vllm_proxy(vllm_fp32):
    """A fault-planting reverse proxy (tests/http_proxy.py) in front of the fp32 server."""
    from http_proxy import Proxy

    proxy = Proxy(vllm_fp32.base)
    yield proxy
    proxy.close()


@pytest.fixture
def runtime_unimplemented(monkeypatch):
    """The runtime stage as a declared stage without a runner: tests of what promote does with an
    unimplemented stage (error, never pass; merge keeps earlier fails) keep their subject now that
    stage 3 has a runner."""
    import dataclasses

    from promote import sections

    declared = sections.by_name("runtime")
    sections.register(dataclasses.replace(declared, plugin=None), replace=True)
    yield
    sections.register(declared, replace=True)


@pytest.fixture
def fresh_redaction():
    """An empty secret registry before and after the test (``redact`` is process-global): what one test
    registers can neither mask nor leak into another's output."""
    from promote import redact

    redact.reset()
    yield
    redact.reset()
