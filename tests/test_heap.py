"""promote/heap.py: while a kernel loads, the collector's full collections are held back (young ones still
free short-lived cycles); afterwards the survivors are frozen, so later collections skip them (~0.7 s of
each `promote check` with torch and transformers, docs/performance.md). Only in a process promote owns."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from promote import heap
from promote.cli import cli
from promote.kernels.base import Kernel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def owned(monkeypatch):
    """This test process as if it were promote's own (as `cli.main` makes it); the freeze undone after."""
    monkeypatch.setattr(heap, "_owned", True)
    monkeypatch.setattr(heap, "_released", False)
    assert gc.isenabled()
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.enable()
    gc.set_threshold(*before)


generational = pytest.mark.skipif(not heap.HOLDS_FULL_COLLECTIONS,
                                  reason="Python 3.14's incremental collector has no full collections to hold back")


def held_back() -> bool:
    """Full collections are held back (the young generations still collected); from Python 3.14 there are
    none to hold back (heap.HOLDS_FULL_COLLECTIONS) and the collector just stays on."""
    return gc.isenabled() and (gc.get_threshold()[2] == heap._NEVER or not heap.HOLDS_FULL_COLLECTIONS)


class Node:
    """An object that can sit in a reference cycle (plain objects are tracked by the collector)."""

    def __init__(self) -> None:
        self.me = self


def test_a_load_holds_back_full_collections_then_frees_its_cycles_and_freezes_the_rest(owned):
    frozen_before = gc.get_freeze_count()
    gc.collect()
    with heap.loading():
        assert held_back()
        garbage = Node()
        gone = weakref.ref(garbage)
        del garbage  # only the cycle keeps it alive: reference counting alone cannot free it
        kept = [Node() for _ in range(1000)]
    assert gc.get_threshold() == owned, "the thresholds were not restored"
    assert gone() is None, "the load's cyclic garbage was kept (frozen) instead of freed"
    assert gc.get_freeze_count() >= frozen_before + 1000, "the load's survivors were not frozen"
    assert kept[0].me is kept[0]


@contextlib.contextmanager
def full_collections() -> Iterator[list[int]]:
    """The full collections that start inside the block, one entry each."""
    full: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(record)
    try:
        yield full
    finally:
        gc.callbacks.remove(record)


@generational
def test_no_full_collection_runs_during_a_load(owned):
    gc.freeze()
    gc.collect()  # the oldest generation (less what is frozen) is now ~empty: any growth allows a full collection
    with full_collections() as during, heap.loading():
        _many = [Node() for _ in range(100_000)]  # ~140 young collections: full ones without the hold
    assert not during, "a full collection ran while the kernel loaded"
    with full_collections() as after:
        _more = [Node() for _ in range(100_000)]
    assert after, "full collections did not resume after the load"


def test_nested_and_concurrent_loads_collect_and_freeze_once_when_the_last_ends(owned):
    inner_done = threading.Event()
    outer_may_end = threading.Event()
    seen = {}

    def other_load() -> None:
        with heap.loading():
            seen["other"] = held_back()
            outer_may_end.wait(10)
        inner_done.set()

    with heap.loading():
        with heap.loading():
            pass
        assert held_back(), "an inner load's end resumed full collections under the outer one"
        worker = threading.Thread(target=other_load)
        worker.start()
    assert held_back(), "the outer load resumed full collections while another thread's load runs"
    outer_may_end.set()
    worker.join(10)
    assert inner_done.is_set() and seen["other"] is True
    assert gc.get_threshold() == owned


def test_a_failed_load_resumes_the_collector_and_freezes_nothing(owned):
    frozen_before = gc.get_freeze_count()
    with pytest.raises(RuntimeError, match="weights"), heap.loading():
        _partial = [Node() for _ in range(100)]
        raise RuntimeError("no weights")
    assert gc.get_threshold() == owned
    assert gc.get_freeze_count() == frozen_before


def test_a_collector_the_host_turned_off_stays_off_and_nothing_is_frozen(owned):
    frozen_before = gc.get_freeze_count()
    gc.disable()
    with heap.loading():
        assert gc.get_threshold() == owned
        _more = [Node() for _ in range(100)]
    assert not gc.isenabled()
    assert gc.get_freeze_count() == frozen_before


def test_a_program_that_imports_promote_keeps_its_collector(monkeypatch):
    monkeypatch.setattr(heap, "_owned", False)
    frozen_before = gc.get_freeze_count()
    before = gc.get_threshold()
    with heap.loading():
        assert gc.get_threshold() == before
        _more = [Node() for _ in range(100)]
    assert gc.get_freeze_count() == frozen_before


class CyclicKernel(Kernel):
    """Opens a "model" that sits in a reference cycle (as a transformers Llama's parameters do) with a 16 MB
    payload, the way a kernel's weights are what its load leaves alive."""

    kind = "cyclic"

    def __init__(self) -> None:
        super().__init__(SimpleNamespace(batch_size=1), role="candidate")

    def _open_impl(self) -> None:
        self.model = Node()
        self.model.weights = bytearray(16 << 20)

    def _run_impl(self, batch):  # pragma: no cover - never run
        raise AssertionError


def test_a_closed_kernels_frozen_cycles_are_freed_before_the_next_kernel_loads(owned):
    first = CyclicKernel()
    first.open()
    weights = weakref.ref(first.model)
    first.close()
    del first
    gc.collect()
    assert weights() is not None, "not frozen: the test no longer shows what released() is for"
    second = CyclicKernel()
    second.open()  # the next load frees the closed kernel's cycles first
    assert weights() is None, "a closed kernel's model stayed frozen: each reload would keep the last one's weights"
    second.close()


@generational
def test_without_a_close_the_next_load_runs_no_full_collection(owned):
    first = CyclicKernel()
    first.open()
    with full_collections() as full:
        second = CyclicKernel()
        second.open()  # a check's candidate after its reference: nothing closed, nothing to rescan
    assert not full, "a load rescanned the whole heap though no kernel had closed"
    first.close()
    second.close()


# A torch kernel whose build() and first forward write down what the collector was doing then.
MODEL = """
import gc, json, os
import torch

LOGS = []

class Echo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = {"build_thresholds": gc.get_threshold(), "frozen_at_build": gc.get_freeze_count()}
        LOGS.append(open(os.environ["HEAP_PROBE"] + ".log", "a"))  # never closed, alive to the end, frozen
        LOGS[-1].write("a line the model logged while it loaded\\n")

    def forward(self, ids):
        if "forward_thresholds" not in self.seen:
            self.seen.update(forward_thresholds=gc.get_threshold(), frozen_at_forward=gc.get_freeze_count())
            with open(os.environ["HEAP_PROBE"], "a") as out:
                out.write(json.dumps(self.seen) + "\\n")
        return torch.nn.functional.one_hot(ids % 16, 16).float() * 3.0

def build():
    return Echo()
"""


def _workload(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "eval.jsonl").write_text(
        "".join(f'{{"id": "s{i}", "input_ids": [{i}, 5, 7, 9, 11, 13]}}\n' for i in range(8)))
    contract = tmp_path / "contract.yaml"
    contract.write_text(textwrap.dedent("""
        version: 1
        name: heap
        reference: {kind: torch, model: model.py:build, batch_size: 4}
        candidate: {kind: torch, model: model.py:build, batch_size: 4}
        data: {path: eval.jsonl, task: causal-lm}
        numerical: {clauses: [{id: kl, metric: kl, stat: max, max: 1}]}
    """))
    return contract


def test_the_promote_command_loads_kernels_with_the_collector_paused_then_frozen(tmp_path):
    contract = _workload(tmp_path)
    probe = tmp_path / "probe.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HEAP_PROBE": str(probe)}
    proc = subprocess.run([sys.executable, "-c", "import promote.cli; promote.cli.main()", "check", str(contract),
                           "--stage", "numerics", "--no-progress", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["verdict"] == "pass"
    seen = [json.loads(line) for line in probe.read_text().splitlines()]
    assert len(seen) == 2, seen  # reference and candidate
    for kernel in seen:
        if heap.HOLDS_FULL_COLLECTIONS:
            assert kernel["build_thresholds"][2] == heap._NEVER, "a kernel was built with full collections running"
        assert kernel["forward_thresholds"] == list(gc.get_threshold()), "full collections stayed held back"
        assert kernel["frozen_at_forward"] > 100_000, "torch's objects were not frozen after loading"
    # promote's exit closes every open file (signals.finish); one frozen with the model must be among them
    assert (tmp_path / "probe.jsonl.log").read_text() == "a line the model logged while it loaded\n" * 2


def test_the_same_check_in_a_host_process_leaves_the_collector_alone(tmp_path, monkeypatch):
    contract = _workload(tmp_path)
    probe = tmp_path / "probe.jsonl"
    monkeypatch.setenv("HEAP_PROBE", str(probe))
    monkeypatch.setattr(heap, "_owned", False)
    frozen_before = gc.get_freeze_count()
    result = CliRunner().invoke(cli, ["check", str(contract), "--stage", "numerics", "--no-progress"])
    assert result.exit_code == 0, result.output
    seen = [json.loads(line) for line in probe.read_text().splitlines()]
    assert len(seen) == 2 and all(kernel["build_thresholds"] == list(gc.get_threshold()) for kernel in seen)
    assert gc.get_freeze_count() == frozen_before


def test_a_closed_torch_kernel_lets_its_model_go(tmp_path, monkeypatch):
    """Calibrate keeps each planted fault's row (and its kernel) to the end: before, every module fault's fresh
    model stayed alive with it (8 Llama models at the end of a six-fault calibration)."""
    from promote.contract.model import load_contract
    from promote.kernels import build_kernel

    monkeypatch.setenv("HEAP_PROBE", str(tmp_path / "probe.jsonl"))
    contract, _ = load_contract(str(_workload(tmp_path)))
    kernel = build_kernel(contract.candidate, role="candidate")
    kernel.open()
    model = weakref.ref(kernel.module)
    kernel.close()
    assert model() is None, "a closed torch kernel still holds its model"
    kernel.open()  # opening it again builds the model again
    assert kernel.module is not None
    kernel.close()


def test_calibrate_frees_each_fault_model_after_its_row(tmp_path, monkeypatch):
    """Every row's fresh candidate is gone before the next row builds one: at most the honest pair and one fault
    model are alive at a time."""
    contract = _workload(tmp_path)
    with contract.open("a") as out:
        out.write(textwrap.dedent("""
            calibration:
              faults:
                a: {fault: layer, module: "", scale: 1.5}
                b: {fault: layer, module: "", scale: 2.0}
                c: {fault: layer, module: "", scale: 2.5}
        """))
    alive = []
    import promote.kernels.torch_kernel as torch_kernel

    opened = torch_kernel.TorchKernel._open_impl

    def track(self):
        opened(self)
        alive.append(weakref.ref(self.module))
        assert sum(ref() is not None for ref in alive) <= 3, "an earlier row's fault model is still alive"

    monkeypatch.setattr(torch_kernel.TorchKernel, "_open_impl", track)
    monkeypatch.setenv("HEAP_PROBE", str(tmp_path / "probe.jsonl"))
    result = CliRunner().invoke(cli, ["calibrate", str(contract), "--faults", "a,b,c"])
    assert "an earlier row's fault model" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output  # a verdict on every row (0: all caught, 1: one missed)
    assert "| a |" in result.output and "| c |" in result.output, result.output
    assert len(alive) == 5, (len(alive), result.output)  # the honest pair, then one fresh model per fault
