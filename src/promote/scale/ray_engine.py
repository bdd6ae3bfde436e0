"""``promote check --engine ray``: the offline pass's shards as Ray actors, merged on the driver.

Each actor builds both kernels in its own process (logits never travel through the object store;
only a shard's partial state, a few KB to a few MB of bytes, comes back), sets its torch threads
explicitly, and runs the shards it is given with the shard computer it is handed (the offline loop's
``stages.shards.ShardComputer``, the code behind ``--shard I/N``; this module knows no stage), so a Ray
run and a hand-sharded run give the same partials. The caller merges them as ``promote merge`` does:
every shard exactly once, the merged sample count equal to the eval set's, so a gate never passes on
part of the data. A worker that dies (OOM, node lost, killed) is
restarted and its task retried (``max_restarts`` / ``max_task_retries``); a failed attempt's output is
never consumed, so nothing double-counts. Ray is imported only here, only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from promote.errors import EvaluationError, PromoteError, UsageError
from promote.scale.partial import Partial

RETRIES = 3  # restarts of a dead actor, and retries of the shard it was running


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'promote[ray]'") from None
    return ray


class ShardWorker:
    """A Ray actor's body: ``compute(index, count) -> partial bytes``, built once per actor process."""

    def __init__(self, compute: Callable[[int, int], bytes], threads: int) -> None:
        import numba
        import torch

        # Explicit: each actor uses the CPUs it reserved (num_cpus), not every core of the node.
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # the fused metric kernels
        self.compute = compute

    def pid(self) -> int:
        return os.getpid()

    def run(self, index: int, count: int) -> bytes:
        """Shard ``index`` of ``count`` as partial bytes (the computer opens its kernels on the first)."""
        return self.compute(index, count)


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def run_shards(compute: Callable[[int, int], bytes], *, address: str | None = None, workers: int = 2,
               shards: int | None = None, threads: int = 1) -> list[tuple[str, Partial]]:
    """``shards`` (default ``workers``) shards computed by ``compute`` on ``workers`` actors, as
    ``(where, partial)`` pairs (in completion order: merging is order-independent)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        target = address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=target, include_dashboard=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EvaluationError(f"--engine ray: cannot start or reach Ray at {target or 'a new local cluster'}: "
                                  f"{exc}") from None
    count = shards or workers
    actor_class = ray.remote(ShardWorker).options(num_cpus=threads, max_restarts=RETRIES,
                                                  max_task_retries=RETRIES)
    actors = [actor_class.remote(compute, threads) for _ in range(workers)]
    partials: list[tuple[str, Partial]] = []
    try:
        pending = {actors[i % workers].run.remote(i, count): i for i in range(count)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                blob = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's exception
                cause = _cause(exc)
                if isinstance(cause, PromoteError):
                    raise type(cause)(f"Ray shard {index}/{count}: {cause.format_message()}") from None
                raise EvaluationError(f"Ray shard {index}/{count} failed after {RETRIES} retries: "
                                      f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                                      ) from None
            partials.append((f"Ray shard {index}/{count}", Partial.from_bytes(blob, f"Ray shard {index}/{count}")))
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
    return partials
