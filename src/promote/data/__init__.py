"""The eval set: samples and their reading (JSONL, tensor inputs) and batching — torch-free.

``samples`` holds the types, ``jsonl`` the reader, ``tensors`` the named inputs of `task: tensor`.
The package re-exports the names callers use, so ``from promote.data import EvalSet`` keeps working.
"""

from __future__ import annotations

from promote.data.jsonl import TASK_FIELDS, load_evalset, read_jsonl
from promote.data.samples import Batch, EvalSet, Sample, batches
from promote.data.tensors import FileInput, TensorBatch, tensor_batches

__all__ = ["TASK_FIELDS", "Batch", "EvalSet", "FileInput", "Sample", "TensorBatch", "batches", "load_evalset",
           "read_jsonl", "tensor_batches"]
