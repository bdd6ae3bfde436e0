"""`promote check --engine ray` on a real local Ray runtime (``ray.init(num_cpus=2)`` once per
session, never skipped under CI): the Ray run equals the single-process run on the example
contracts, a worker killed by PID mid-shard is restarted and its shard retried with an identical
result, and the partials merge to the same report in whatever order they return."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from scale_support import comparable, example_variant

from promote.run import CheckOptions, run_check
from promote.scale.partial import Partial
from promote.scale.ray_engine import ShardWorker
from promote.stages.shards import ShardComputer, from_partials

ray = pytest.importorskip("ray") if os.environ.get("CI") != "true" else __import__("ray")
SLOW = Path(__file__).resolve().parent / "fixtures" / "ray_slow.py"
RAY = CheckOptions(engine="ray", workers=2)


@pytest.fixture(scope="session")
def ray_runtime(tmp_path_factory):
    piddir = tmp_path_factory.mktemp("ray-pids")
    # Workers inherit the environment of the process that starts Ray: set what ray_slow.py reads first.
    os.environ["PROMOTE_TEST_PIDDIR"] = str(piddir)
    os.environ["PROMOTE_TEST_DRIVER_PID"] = str(os.getpid())
    # ...and where a plug-in module from the tests folder is imported from (tests/toy_plugins.py).
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield piddir
    ray.shutdown()
    for name in ("PROMOTE_TEST_PIDDIR", "PROMOTE_TEST_DRIVER_PID"):
        os.environ.pop(name, None)


@pytest.mark.parametrize("source", ["contract.yaml", "slices.yaml"])
def test_the_ray_run_equals_the_single_process_run(ray_runtime, tmp_path, source):
    path = example_variant(tmp_path, source, limit=64)
    if source == "slices.yaml":
        path.write_text(path.read_text().replace("resamples: 2000", "resamples: 300"))
    single = run_check(str(path))
    on_ray = run_check(str(path), RAY)
    assert ray.is_initialized()  # the engine used the session's Ray and left it running
    assert comparable(on_ray) == comparable(single)
    assert on_ray.kernels["reference"]["fingerprint"]["threads"] == 1  # set explicitly in each actor
    assert on_ray.data["samples"] == 64 and on_ray.stages[0].details["samples"] == 64


def test_a_worker_killed_mid_shard_is_retried_and_the_result_is_identical(ray_runtime, tmp_path):
    piddir = ray_runtime
    path = example_variant(tmp_path, limit=64, candidate=f"{SLOW}:build")
    single = run_check(str(path))  # in this process ray_slow.py does not slow down
    assert not list(piddir.iterdir())
    box: dict = {}
    runner = threading.Thread(target=lambda: box.setdefault("report", run_check(str(path), RAY)))
    runner.start()
    deadline = time.monotonic() + 300
    while not list(piddir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = int(sorted(piddir.iterdir(), key=lambda p: p.stat().st_mtime)[0].name)
    os.kill(victim, signal.SIGKILL)  # the actor dies while building its kernels / running its shard
    runner.join(timeout=300)
    assert not runner.is_alive() and "report" in box
    pids = {int(p.name) for p in piddir.iterdir()}
    assert victim in pids and len(pids) >= 3  # two actors, and the killed one restarted in a new process
    assert comparable(box["report"]) == comparable(single)
    assert box["report"].stages[0].details["samples"] == 64


def test_partials_returned_in_any_order_give_the_same_report(ray_runtime, tmp_path):
    path = example_variant(tmp_path, limit=64)
    actor = ray.remote(ShardWorker).options(num_cpus=1)
    workers = [actor.remote(ShardComputer(str(path), {}, ["numerics"]), 1) for _ in range(2)]
    blobs = ray.get([workers[i % 2].run.remote(i, 4) for i in range(4)])
    for worker in workers:
        ray.kill(worker)
    partials = [(f"shard {i}", Partial.from_bytes(b, f"shard {i}")) for i, b in enumerate(blobs)]
    reports = [comparable(run_check(str(path), CheckOptions(stages=("numerics",)),
                                    offline=lambda ctx, _s, order=order: from_partials(ctx, order)))
               for order in (partials, partials[::-1], [partials[i] for i in (2, 0, 3, 1)])]
    assert reports[0] == reports[1] == reports[2]
    assert reports[0] == comparable(run_check(str(path), CheckOptions(stages=("numerics",))))


def test_a_tensor_task_and_a_cached_noise_floor_on_ray_equal_one_process(ray_runtime, tmp_path):
    """The Ray engine runs the same offline loop: `data.task: tensor` shards by its same-signature
    batches, and a noise floor measured on Ray is stored, then loaded by the first shard only."""
    import yaml

    from promote.stages.numerics import floor_cache

    tensor = Path(__file__).resolve().parents[1] / "examples" / "tiny_mlp" / "contract.yaml"
    assert comparable(run_check(str(tensor), RAY)) == comparable(run_check(str(tensor)))
    path = example_variant(tmp_path, limit=64)
    doc = yaml.safe_load(path.read_text())
    doc["numerical"]["noise_floor"] = {"perturb": ["odd_batch"], "cache": str(tmp_path / "floors")}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    floor_cache._MEMORY.clear()
    measured = run_check(str(path), RAY)
    assert measured.stages[0].details["noise_floor"]["cached"] is False
    assert len(list((tmp_path / "floors").glob("*.json"))) == 1
    floor_cache._MEMORY.clear()
    cached = run_check(str(path), RAY)
    assert cached.stages[0].details["noise_floor"]["cached"] is True
    floor_cache._MEMORY.clear()
    assert comparable(cached) == comparable(measured) == comparable(run_check(str(path)))


def test_a_plugged_stage_and_kind_run_on_ray_like_one_process(ray_runtime, tmp_path):
    """tests/toy_plugins.py's stage and kernel kind on Ray actors: the actors import the plug-in module
    the driver registered (``registry.PLUGINS``), and the merged report is the single-process one."""
    import sys

    import toy_plugins
    from test_plugins import toy_contract

    toy_plugins.register()
    try:
        path = toy_contract(tmp_path)
        single = run_check(str(path))
        on_ray = run_check(str(path), RAY)
        assert [s.name for s in on_ray.stages] == ["numerics", "toy"]
        assert on_ray.stages[1].details["positions"] == single.stages[1].details["positions"] > 0
        assert comparable(on_ray) == comparable(single)
    finally:
        toy_plugins.unregister()
        sys.modules.pop("toy_plugins", None)
