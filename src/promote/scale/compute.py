"""What a shard is: its samples (whole batches of the single run, ``split.py``) and the facts its
partial carries so ``promote merge`` can check the shards make up one run.

The shard's consumers and their pass are the single-process ones (``stages/offline.py`` computes a
partial with them); this module knows no stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from promote.contract.model import Contract
from promote.data import EvalSet, Sample
from promote.data.tensors import tensor_batch_groups
from promote.scale.partial import Partial
from promote.scale.split import content_digest, file_digest, ids_digest, kernel_files, shard_bounds


def batch_size(contract: Contract) -> int:
    """The single run's batch size, which the split is cut at (``engine.passes.kernel_pass``)."""
    return min(contract.reference.batch_size, contract.candidate.batch_size)


def shard_of(contract: Contract, evalset: EvalSet, index: int, count: int) -> tuple[Sample, ...]:
    """Shard ``index`` of ``count``: contiguous whole batches of the single run. For `data.task: tensor`
    the batches are its same-signature groups (``data.tensors.tensor_batch_groups``), so the shard's
    samples re-batch into exactly the batches the single run used."""
    size = batch_size(contract)
    if contract.data.task == "tensor":
        groups = tensor_batch_groups(evalset.samples, size)
        first, last = shard_bounds(len(groups), 1, index, count)
        return tuple(s for group in groups[first:last] for s in group)
    start, end = shard_bounds(len(evalset.samples), size, index, count)
    return tuple(evalset.samples[start:end])


def input_files(contract: Contract) -> dict[str, str]:
    """Digests of the model and weights files both kernels name (``split.kernel_files``) and of the
    tensor inputs file the eval set reads (`data.inputs_file`): the eval set's content digest names its
    tensors only by key, dtype and shape, so other values under the same keys would merge unnoticed."""
    files = kernel_files([(role, getattr(contract, role)) for role in ("reference", "candidate")])
    inputs = contract.data.inputs_file if contract.data is not None else None
    if inputs is not None and inputs.is_file():
        files["data.inputs_file"] = file_digest(inputs)
    return files


def describe(contract: Contract, evalset: EvalSet, index: int, count: int, stages: Sequence[str], *,
             files: dict[str, str] | None = None, content: str | None = None) -> Partial:
    """An empty partial for shard ``index`` of ``count``: who it belongs to, which samples it holds, and
    the digests of the eval set's content and the kernels' files (``files``/``content``: computed once
    by a caller describing many shards)."""
    chosen = shard_of(contract, evalset, index, count)
    return Partial(
        contract={"path": str(contract.path.resolve()), "display": contract.source.display_path,
                  "sha256": contract.sha256, "raw_sha256": contract.raw_sha256, "name": contract.name},
        kernels={}, shard={"index": index, "count": count, "batch_size": batch_size(contract)},
        evalset={"samples": len(evalset.samples), "ids_sha256": ids_digest([s.id for s in evalset.samples]),
                 "content_sha256": content or content_digest(evalset.samples)},
        sample_ids=[s.id for s in chosen], stages=list(stages), files=input_files(contract) if files is None else files)
