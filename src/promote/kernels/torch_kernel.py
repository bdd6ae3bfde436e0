"""PyTorch kernel: an nn.Module from a factory, weights from safetensors, a declared precision,
optionally compiled with inductor.

Precision flags (TF32, matmul precision) are process-global in torch, so they are set around each
forward call and restored afterwards: a reference run in the same process as a candidate run must
not inherit the candidate's flags (docs/contract.md, `reference`/`candidate`).

``int8-dynamic`` uses ``torch.ao.quantization.quantize_dynamic`` (real int8 fbgemm/x86 kernels). It is
deprecated in favour of torchao but still ships and works in torch 2.13, and needs no extra
dependency; where it is gone, torchao's ``quantize_`` is used when installed, else a clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from promote.data import Batch, TensorBatch
from promote.errors import EvaluationError, UsageError
from promote.kernels.base import Kernel, Outputs, evaluation_failure, is_out_of_memory

_WEIGHT_DTYPES = {"bf16-weights": torch.bfloat16, "fp16-weights": torch.float16}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def precision_flags(precision: str) -> Iterator[dict[str, Any]]:
    """Set TF32/matmul-precision flags for ``precision``; restore the previous ones on exit."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    try:
        yield {"allow_tf32": allow_tf32, "float32_matmul_precision": torch.get_float32_matmul_precision()}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


@contextlib.contextmanager
def _beside(model_file: Any) -> Iterator[None]:
    """Put the model file's directory first on ``sys.path`` while it is imported, as ``python
    model.py`` would, so ``import helpers`` of a sibling module works; restored afterwards so one
    contract's directory does not shadow modules for the rest of the run."""
    folder = str(model_file.parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        if folder in sys.path:
            sys.path.remove(folder)  # the first occurrence: the entry inserted above


def load_factory(spec: Any) -> Any:
    """Import ``file.py:factory`` (or ``package.module:factory``) and return the factory callable."""
    where = spec.model
    if spec.model_file is not None:
        digest = hashlib.sha256(str(spec.model_file).encode()).hexdigest()[:12]
        name = f"promote_user_model_{digest}"
        module = sys.modules.get(name)
        if module is None:
            import_spec = importlib.util.spec_from_file_location(name, spec.model_file)
            if import_spec is None or import_spec.loader is None:
                raise UsageError(f"{where}: cannot import {spec.model_file} as Python")
            module = importlib.util.module_from_spec(import_spec)
            sys.modules[name] = module
            try:
                with _beside(spec.model_file):
                    import_spec.loader.exec_module(module)
            except BaseException as exc:
                del sys.modules[name]
                raise evaluation_failure(f"model `{where}`", "importing the model file", exc) from None
    else:
        try:
            module = importlib.import_module(spec.module)
        except ImportError as exc:
            raise UsageError(f"model `{where}`: cannot import module `{spec.module}` ({exc})") from None
    factory = getattr(module, spec.factory, None)
    if not callable(factory):
        raise UsageError(f"model `{where}`: `{spec.factory}` is not a callable in that module")
    return factory


def quantize_int8_dynamic(module: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """Dynamic int8 quantisation of every nn.Linear; returns the module and which API did it."""
    quantize_dynamic = getattr(getattr(torch, "ao", None) and torch.ao.quantization, "quantize_dynamic", None)
    if quantize_dynamic is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notices: the API still works here
            quantized = quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
        return quantized, f"torch.ao.quantization.quantize_dynamic ({torch.backends.quantized.engine})"
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        raise UsageError("precision `int8-dynamic`: this torch has no torch.ao.quantization.quantize_dynamic; "
                         "install torchao (pip install torchao) for dynamic int8 quantisation") from None
    quantize_(module, Int8DynamicActivationInt8WeightConfig())
    return module, "torchao.quantization.quantize_ (Int8DynamicActivationInt8WeightConfig)"


def _logits_of(output: Any) -> torch.Tensor | None:
    """Accept a tensor, an HF-style object with ``.logits``, a dict with ``logits``, or a tuple's first item."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output.get("logits")
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class TorchKernel(Kernel):
    kind = "torch"
    # `bf16-weights`/`fp16-weights` also under autocast to that dtype: set by a model-cast fault when
    # the model's forward mixes dtypes (its own float32 tensors meet the cast weights), as `bf16` runs it.
    autocast_weights = False

    def describe(self) -> str:
        compiled = "" if self.spec.compile == "off" else f", {self.spec.compile}"
        return f"torch, {self.spec.precision}{compiled}"

    def _open_impl(self) -> None:
        from safetensors.torch import load_file

        if self.spec.device == "cuda" and not torch.cuda.is_available():
            raise EvaluationError(f"{self.label}: `device: cuda` but torch sees no CUDA device "
                                  f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); run on a "
                                  "GPU machine or set `device: cpu`")
        factory = load_factory(self.spec)
        try:
            module = factory()
        except BaseException as exc:
            raise evaluation_failure(self.label, f"factory `{self.spec.model}`", exc) from None
        if not isinstance(module, torch.nn.Module) and not callable(module):
            raise UsageError(f"{self.label}: factory `{self.spec.model}` returned {type(module).__name__}, "
                             "expected an nn.Module or a callable")
        if self.spec.weights is not None:
            if not isinstance(module, torch.nn.Module):
                raise UsageError(f"{self.label}: `weights` given but the factory did not return an nn.Module")
            try:
                state = load_file(str(self.spec.weights))
            except Exception as exc:
                raise UsageError(f"{self.spec.weights_display}: not a readable safetensors file ({exc})") from None
            result = module.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise UsageError(
                    f"{self.spec.weights_display}: weights do not match the model built by `{self.spec.model}`: "
                    f"missing {list(result.missing_keys)[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
                )
        if isinstance(module, torch.nn.Module):
            module.eval()
            if self.spec.precision in _WEIGHT_DTYPES:
                module = module.to(_WEIGHT_DTYPES[self.spec.precision])
            module = module.to(self.spec.device)
        self.quantization = None
        if self.spec.precision == "int8-dynamic":
            if self.spec.device != "cpu" or not isinstance(module, torch.nn.Module):
                raise UsageError(f"{self.label}: precision `int8-dynamic` needs an nn.Module on device `cpu`")
            module, self.quantization = quantize_int8_dynamic(module)
        if self.spec.compile == "inductor":
            # Compilation is lazy: the first forward of each new shape compiles (seconds to a minute).
            module = torch.compile(module, backend="inductor", mode=self.spec.compile_mode)
        self.module = module

    def _close_impl(self) -> None:
        """Let the model go: a closed kernel that stays referenced (calibrate keeps each planted fault's row)
        must not keep its weights; opening it again builds the model again."""
        self.module = None

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.spec.threads is None:
            yield
            return
        saved = torch.get_num_threads()
        torch.set_num_threads(self.spec.threads)
        try:
            yield
        finally:
            torch.set_num_threads(saved)

    def forward_context(self) -> contextlib.ExitStack:
        """Threads, precision flags, inference mode and autocast for one forward call (task tensor)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self._threads())
        stack.enter_context(precision_flags(self.spec.precision))
        stack.enter_context(torch.inference_mode())
        autocast_dtype = _AUTOCAST_DTYPES.get(self.spec.precision)
        if autocast_dtype is not None:
            stack.enter_context(torch.autocast(device_type=self.spec.device, dtype=autocast_dtype))
        return stack

    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs:
        if isinstance(batch, TensorBatch):
            from promote.kernels.torch_tensors import run_tensor_batch

            return run_tensor_batch(self.module, batch, label=self.label, device=self.spec.device,
                                    weight_dtype=_WEIGHT_DTYPES.get(self.spec.precision),
                                    forward_context=self.forward_context)
        ids = torch.from_numpy(batch.input_ids).to(self.spec.device)
        autocast_dtype = _AUTOCAST_DTYPES.get(self.spec.precision)
        if self.autocast_weights:  # a whole-model cast of a model whose forward mixes dtypes (inject.py)
            autocast_dtype = _WEIGHT_DTYPES.get(self.spec.precision, autocast_dtype)
        autocast = (
            torch.autocast(device_type=self.spec.device, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        try:
            with self._threads(), precision_flags(self.spec.precision), torch.inference_mode(), autocast:
                raw = self.module(ids)
        except BaseException as exc:
            if is_out_of_memory(exc):
                raise EvaluationError(f"{self.label}: out of {self.spec.device} memory in the forward pass of a batch "
                                      f"of {ids.shape[0]} sequences × {ids.shape[1]} tokens; lower this kernel's "
                                      f"`batch_size` (now {self.spec.batch_size}) ({type(exc).__name__})") from None
            raise evaluation_failure(self.label, "forward pass", exc) from None
        logits = _logits_of(raw)
        if logits is None:
            raise UsageError(f"{self.label}: forward returned {type(raw).__name__}; the task `causal-lm` needs a "
                             "logits tensor (or an object with `.logits`, or a dict with `logits`)")
        if not isinstance(logits, torch.Tensor):
            raise UsageError(f"{self.label}: forward returned logits of type {type(logits).__name__}; the task "
                             "`causal-lm` needs a torch tensor")
        # The tensor stays on its device in its dtype: the pass engine scores it there, `chunk` positions at
        # a time (engine/device_scoring.py). CUDA-graph outputs of a compiled module are overwritten by its
        # next call (a noise floor's rerun), so those are copied.
        logits = logits.detach()
        if self.spec.compile != "off" and logits.device.type == "cuda":
            logits = logits.clone()
        return Outputs(logits=logits, chunk=self.spec.chunk)

    def identity_facts(self) -> dict[str, Any]:
        """The weights file (its tokenizer and config are looked for beside it: identity/fingerprint.py)."""
        return {"files": {"weights": self.spec.weights}} if self.spec.weights is not None else {}

    def _fingerprint_impl(self) -> dict[str, Any]:
        with precision_flags(self.spec.precision) as flags:
            pass
        return {
            "torch": torch.__version__,
            "device": self.spec.device,
            "precision": self.spec.precision,
            "threads": self.spec.threads or torch.get_num_threads(),
            "cuda": torch.version.cuda,
            **flags,
            "mkldnn_bf16": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()),
            "compile": self.spec.compile,
            "compile_mode": self.spec.compile_mode,
            "quantization": self.quantization,
        }


__all__ = ["TorchKernel", "precision_flags", "load_factory"]
