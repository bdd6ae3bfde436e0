"""Stage 1, offline numerics (N): the package (``stages/api.py``) behind ``sections.STAGES["numerics"]``.

Consumers of the offline pass: the per-position summaries (``summaries``) and, when declared, one
noise-floor accumulator per floored kernel and perturbation (``floor/NAME``, fed the kernel against
itself); for `data.task: tensor`, the per-output tensor summaries (``tensors``). A floor cached for
these kernels and this eval set (``floor_cache.py``) is loaded instead of measured, by the shard that
holds the eval set's first samples only, and stored after judging when it was measured; ``localize``
runs after the pass on the first shard. Maths and judging: ``judge.py``, ``tensors.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from promote.contract.load import LoadedDocument, Problem
from promote.contract.numerical import NumericalSpec, numerical_problems, parse_numerical
from promote.results import StageResult
from promote.stages.api import OfflineStage, PassRecord
from promote.stages.context import StageContext

FLOOR = "floor/"


class Numerics(OfflineStage):
    name = "numerics"

    def parse(self, doc: LoadedDocument, raw: Any, problems: list[Problem], parts: Mapping[str, Any]) -> Any:
        if any(p.severity == "error" for p in problems):
            return None  # the typed section is only built from a document without errors
        return parse_numerical(doc, raw, problems, dict(parts))

    def schema(self) -> dict[str, Any]:
        from promote.stages.numerics.schema import SECTION

        return SECTION

    def problems(self, doc: LoadedDocument) -> list[Problem]:
        return numerical_problems(doc)

    @staticmethod
    def spec(ctx: StageContext) -> NumericalSpec:
        return ctx.contract.numerical

    @staticmethod
    def tensor(ctx: StageContext) -> bool:
        return ctx.contract.data.task == "tensor"

    def tie_margin(self, ctx: StageContext) -> float | None:
        return None if self.tensor(ctx) else self.spec(ctx).tie_margin

    def consumers(self, ctx: StageContext) -> dict[str, Any]:
        spec = self.spec(ctx)
        if self.tensor(ctx):
            from promote.stages.numerics.tensors import tensor_consumer

            return {"tensors": tensor_consumer(spec)}
        from promote.stages.numerics.judge import prepare

        acc, floor = prepare(spec)
        out: dict[str, Any] = {"summaries": acc}
        for comparison, name in zip(floor.floors() if floor else (), floor.accumulators if floor else (), strict=True):
            out[FLOOR + name] = comparison
        return out

    def _floor_key(self, ctx: StageContext, kernels: Mapping[str, Any]) -> str:
        """The floor cache's key: the live kernels' specs (a fault-wrapped candidate's differs from the
        contract's) and their fingerprints as opened (``ctx.fingerprints``)."""
        from promote.stages.numerics import floor_cache

        spec = self.spec(ctx).noise_floor
        return floor_cache.floor_key(spec, {role: kernels[role].spec for role in spec.kernels}, ctx.fingerprints,
                                     ctx.evalset)

    def preload(self, ctx: StageContext, consumers: dict[str, Any], kernels: Mapping[str, Any],
                first: bool) -> tuple[str, ...]:
        spec = self.spec(ctx)
        if self.tensor(ctx) or spec.noise_floor is None:
            return ()
        from promote.stages.numerics import floor_cache
        from promote.stages.numerics.noise_floor import NoiseFloor

        keys = tuple(k for k in consumers if k.startswith(FLOOR))
        view = NoiseFloor.of(spec.noise_floor, {k[len(FLOOR):]: consumers[k].consumer for k in keys})
        if not first:  # the first shard loads the cached floor; a shard after it only skips measuring it
            view = NoiseFloor(spec.noise_floor)
        return keys if floor_cache.load(view, self._floor_key(ctx, kernels)) else ()

    def extras(self, ctx: StageContext, consumers: dict[str, Any], kernels: Mapping[str, Any],
               first: bool) -> dict[str, Any]:
        spec = self.spec(ctx)
        if self.tensor(ctx):
            return {}
        out: dict[str, Any] = {"floor_key": self._floor_key(ctx, kernels)} if spec.noise_floor else {}
        if spec.localize and first:  # the first samples of the set: the first shard
            from promote.stages.numerics.localize import localize

            reference, candidate = kernels["reference"], kernels["candidate"]
            out["localize"] = localize(ctx.evalset, reference, candidate, factor=spec.localize.factor,
                                       max_samples=spec.localize.max_samples,
                                       batch_size=min(reference.spec.batch_size, candidate.spec.batch_size))
        return out

    def judge(self, ctx: StageContext, states: dict[str, Any], record: PassRecord) -> StageResult:
        start = time.perf_counter()
        spec = self.spec(ctx)
        if self.tensor(ctx):
            from promote.stages.numerics.tensors import tensor_result

            return tensor_result(spec, states["tensors"], record.seconds, record.kernel_seconds)
        from promote.stages.numerics.judge import localize_note, stage_result

        floor = self._floor(ctx, states, record)
        result = stage_result(spec, states["summaries"], record.seconds, floor=floor,
                              kernel_seconds=record.kernel_seconds, notes=record.notes)
        found = record.extras.get("localize")
        if found is not None:
            result.details["localize"] = found
            result.notes.append(localize_note(found))
        result.duration_s = record.seconds + time.perf_counter() - start
        return result

    def _floor(self, ctx: StageContext, states: dict[str, Any], record: PassRecord) -> Any:
        spec = self.spec(ctx)
        if spec.noise_floor is None:
            return None
        from promote.stages.numerics import floor_cache
        from promote.stages.numerics.noise_floor import NoiseFloor

        floor = NoiseFloor.of(spec.noise_floor, {k[len(FLOOR):]: v for k, v in states.items() if k.startswith(FLOOR)})
        floor.cached = any(k.startswith(FLOOR) for k in record.loaded)
        key = record.extras.get("floor_key")  # from a partial too: untrusted, so only ever a sha256 name
        if not floor.cached and isinstance(key, str) and re.fullmatch("[0-9a-f]{64}", key):
            floor_cache.store(floor, key)  # measured now (in one process or over every shard): reused next time
        return floor

    def covered(self, ctx: StageContext, states: dict[str, Any]) -> str | None:
        evalset = ctx.evalset
        if self.tensor(ctx):
            samples, positions = states["tensors"].samples, evalset.positions
        else:
            samples, positions = states["summaries"].samples, states["summaries"].positions
        if samples != len(evalset.samples) or positions != evalset.positions:
            return (f"merged shards cover {samples} of {len(evalset.samples)} samples and {positions} of "
                    f"{evalset.positions} positions; no verdict on part of the data")
        return None


STAGE = Numerics()
