"""The JSON Schema of a kernel spec (``reference``, ``candidate``, ``runtime.baseline``) and of planted
faults, for ``tools/gen_contract_schema.py`` and the runtime stage's section fragment. Kept with the
kernels: the `api:` values are openai_api.APIS and the kinds contract/kinds.py's."""

from __future__ import annotations

from promote.contract.fault_specs import FAULTS
from promote.contract.kinds import KINDS as KERNEL_KINDS
from promote.contract.schema_parts import (
    BATCH_MAX,
    COUNT_MAX,
    THREADS_MAX,
    described_enum,
    integer,
    number,
    obj,
    string,
)
from promote.kernels.openai_api import APIS

CHUNK_MAX = 1 << 24  # positions per metric chunk: far above any useful chunk (16 M positions × V floats)

PRECISIONS = {
    "fp32": "float32 with TF32 explicitly off (the reference default).",
    "tf32": "float32 storage, TF32 matmuls allowed.",
    "bf16": "bfloat16 autocast around the forward pass; weights stay float32.",
    "fp16": "float16 autocast around the forward pass; weights stay float32.",
    "bf16-weights": "weights and activations cast to bfloat16 (no autocast).",
    "fp16-weights": "weights and activations cast to float16 (no autocast).",
    "int8-dynamic": "nn.Linear layers dynamically quantised to int8 (int8 weights, activations quantised per "
                    "batch at run time; CPU only); other layers stay float32.",
}
GRAPH_OPTIMIZATIONS = {
    "disable": "no graph optimisation (ORT_DISABLE_ALL): closest to the exported graph.",
    "basic": "constant folding and redundant-node elimination (ORT_ENABLE_BASIC).",
    "extended": "plus operator fusions, e.g. GELU, LayerNorm, attention (ORT_ENABLE_EXTENDED).",
    "all": "plus layout optimisations (ORT_ENABLE_ALL, onnxruntime's default).",
}
COMPILE_MODES = ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def api_docs(docs: dict[str, str]) -> dict[str, str]:
    """The `api:` values are openai_api.APIS; each needs its line here."""
    if set(docs) != set(APIS):
        raise SystemExit(f"document every openai_api.APIS value (and no other): {sorted(set(docs) ^ set(APIS))}")
    return {api: docs[api] for api in APIS}



fault = obj(
    "One planted fault (docs/calibration.md): deterministic given `seed`, batch invariant, each documented with "
    "the size of drift it produces.",
    {
        "fault": described_enum(FAULTS, "Which fault."),
        "dtype": {"enum": ["bf16", "fp16"], "description": "`cast`: the dtype rounded to. Default `bf16`."},
        "scope": {"enum": ["logits", "model"], "description": "`cast`: round the output logits only, or cast "
                  "the whole model (torch kernels). Default `logits`."},
        "t": number("`temperature`: the divisor of the logits (0.9 sharpens, 1.1 flattens).", exclusiveMinimum=0),
        "sigma": number("`noise`: standard deviation of the Gaussian added to each selected logit (nats). "
                        "`layer`: noise standard deviation relative to the module output's RMS.", minimum=0),
        "scale": number("`layer`: factor the module's output is multiplied by. Default 1."),
        "layer": string("`overflow`: the module (a `named_modules()` name, e.g. `blocks.1.mlp`) whose output "
                        "overflows."),
        "module": string("`layer`: the module (a `named_modules()` name) whose output is perturbed."),
        "longer_than": integer("`overflow`: positions ≥ this overflow, so only inputs longer than it are hit.",
                               minimum=0, maximum=COUNT_MAX),
        "where": obj("`noise`: which positions are hit; every condition given must hold (default: all).", {
            "tags": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "Sample tags that must equal these values, e.g. `{script: cyrillic}`."},
            "token_ids": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": COUNT_MAX},
                          "minItems": 2, "maxItems": 2,
                          "description": "[lo, hi): the input token at the position lies in this id range."},
            "positions_from": integer("Positions t ≥ this.", minimum=0, maximum=COUNT_MAX),
        }),
        "seed": integer("Seed of the random draws (per sample: seed and crc32 of the sample id). Default 0.",
                        minimum=0, maximum=2**32 - 1),
    },
    ["fault"],
)
inject = {
    "description": "Faults planted into this kernel (one mapping or a list, applied in order), for `promote "
                   "calibrate` and fault drills: output faults (`cast` logits, `temperature`, `noise`) on any kind, "
                   "model faults (`cast` model, `tf32`, `int8-dynamic`, `overflow`, `layer`) on `kind: torch`.",
    "oneOf": [fault, {"type": "array", "items": fault, "minItems": 1}],
}

torch_kernel = obj(
    "A PyTorch module run in-process by promote.",
    {
        "kind": {"const": "torch", "description": "Kernel kind: `torch` runs an nn.Module in this process."},
        "model": string("Python file and factory, `path/to/model.py:build` (path relative to the contract file), "
                        "or an importable `package.module:build`. The factory takes no arguments and returns an "
                        "nn.Module whose forward(input_ids[B,T]) returns logits [B,T,V] (`data.task: causal-lm`), "
                        "or whose forward(**inputs) returns tensors, possibly nested in dicts, lists, tuples, "
                        "dataclasses or HF ModelOutputs, each with a leading batch dimension (`data.task: "
                        "tensor`; a single input named `input` is passed positionally).",
                        pattern="^[^:]+:[A-Za-z_][A-Za-z0-9_]*$"),
        "weights": string("safetensors file with the state dict, loaded strictly (relative to the contract file)."),
        "precision": described_enum(PRECISIONS, "Numeric precision of the forward pass; flags are set and restored "
                                    "around each call and recorded in the report. Default `fp32`."),
        "device": {"enum": ["cpu", "cuda"], "description": "Device to run on. Default `cpu`."},
        "batch_size": integer("Sequences per forward pass. Default 16.", minimum=1, maximum=BATCH_MAX),
        "threads": integer("torch intra-op threads during this kernel's calls (default: torch's own choice).",
                           minimum=1, maximum=THREADS_MAX),
        "chunk": integer("Scored positions per metric chunk: the logits stay on the kernel's device and the "
                         "metrics are computed there, this many positions at a time, so scratch memory is "
                         "about chunk × V floats per side (docs/metrics.md). Default: 2^23 / V positions on "
                         "CPU, 2^25 / V on CUDA; with two torch kernels the smaller `chunk` wins. Lower it "
                         "(or `batch_size`) when the metric pass runs out of memory.",
                         minimum=1, maximum=CHUNK_MAX),
        "compile": {"enum": ["off", "inductor", False],
                    "description": "`inductor`: run the module through torch.compile with the inductor backend "
                                   "(needs a C++ compiler on CPU; the first batches pay the compile time). "
                                   "`off` (or `false`): eager. Default `off`."},
        "compile_mode": {"enum": COMPILE_MODES, "description": "torch.compile `mode` (with `compile: inductor`). "
                         "Default: torch's `default`."},
        "inject": inject,
    },
    ["kind", "model"],
)

onnx_kernel = obj(
    "An ONNX graph run by onnxruntime in this process.",
    {
        "kind": {"const": "onnx", "description": "Kernel kind: `onnx` runs an .onnx file through onnxruntime."},
        "path": string("The .onnx file (relative to the contract file). Its graph takes int64 input_ids [B,T] "
                       "and returns logits [B,T,V]; fixed batch or sequence dimensions are padded to."),
        "providers": {"type": "array", "items": {"type": "string", "description": "An onnxruntime execution "
                      "provider, e.g. `CPUExecutionProvider`, `CUDAExecutionProvider`."}, "minItems": 1,
                      "description": "Execution providers in priority order; each must be available in the "
                                     "installed onnxruntime. Default [CPUExecutionProvider]."},
        "graph_optimization": described_enum(GRAPH_OPTIMIZATIONS, "onnxruntime graph optimisation level; "
                                             "fusions change numerics. Default `all`."),
        "threads": integer("onnxruntime intra-op threads (default: onnxruntime's own choice).", minimum=1,
                           maximum=THREADS_MAX),
        "batch_size": integer("Sequences per run. Default 16.", minimum=1, maximum=BATCH_MAX),
        "input_name": string("Graph input that receives input_ids, when the graph has several inputs."),
        "output_name": string("Graph output holding the logits, when the graph has several outputs "
                              "(default: the only output, or the one named `logits`)."),
        "inject": inject,
    },
    ["kind", "path"],
)

records_kernel = obj(
    "Outputs recorded by another engine (vLLM, SGLang, TensorRT-LLM, a trainer), joined to the eval set by id.",
    {
        "kind": {"const": "records", "description": "Kernel kind: `records` reads recorded outputs (docs/records.md)."},
        "path": string("A safetensors file, or a directory of *.safetensors shards read in sorted order "
                       "(relative to the contract file): input_ids [N,T], mask [N,T], and logits [N,T,V] or "
                       "topk_ids + topk_logprobs [N,T,K] + target_logprobs [N,T]; metadata `ids` lists the "
                       "sample ids."),
        "batch_size": integer("Samples read per step (memory is batch·T·V floats). Default 16.", minimum=1,
                          maximum=BATCH_MAX),
        "inject": inject,
    },
    ["kind", "path"],
)

launch = obj(
    "A server promote starts for this check when `url` is empty or absent (docs/runtime.md, \"One command\"): "
    "on 127.0.0.1 at a free port, waited for until `health` answers 200, stopped by PID (its whole process "
    "group) when the check ends, also on Ctrl-C/SIGTERM. Give exactly one of `command` and `vllm`. A non-empty "
    "`url` (e.g. `${PROMOTE_VLLM_URL:-}`) uses that running server instead.",
    {
        "command": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "string"},
                    "description": "The server's argv; `{port}` and `{host}` are replaced by the chosen port and "
                                   "127.0.0.1. The API base is `http://127.0.0.1:{port}/v1`."},
        "vllm": string("Model directory (with config.json, relative to the contract) served by vLLM's OpenAI "
                       "server: `python -m vllm.entrypoints.openai.api_server --model DIR --host 127.0.0.1 "
                       "--port PORT --dtype DTYPE --served-model-name MODEL ARGS...` (MODEL: this kernel's `model`)."),
        "dtype": string("vLLM `--dtype` (`auto`, `float32`, `bfloat16`, `float16`). Default `auto`."),
        "args": {"type": "array", "maxItems": 1000, "items": {"type": "string"},
                 "description": "More vLLM flags, e.g. `[--max-logprobs, \"-1\", --logprobs-mode, raw_logits]`."},
        "python": string("Interpreter with vLLM installed (`~` expands; relative paths are relative to the "
                         "contract). Default `python3`; tools/vllm_env.sh builds one."),
        "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                "description": "Extra environment variables for the server (promote's PYTHONPATH, PYTHONHOME "
                               "and VIRTUAL_ENV are not passed on)."},
        "health": string("Path that answers 200 once the server is ready. Default `/health`.", pattern="^/"),
        "timeout_s": number("Seconds to wait for `health`. Default 600.", exclusiveMinimum=0),
        "keep_log": {"type": "boolean", "description": "Keep the server's log file after a check that went well "
                                                       "(it is always kept, and its path printed, when the "
                                                       "server failed). Default false."},
        "log_dir": string("Directory for the server's per-job log and pid file (relative to the contract). "
                          "Default: the system temporary directory."),
    },
)

openai_kernel = obj(
    "A model behind a serving API over HTTP (vLLM, an OpenAI-compatible server, SGLang, TGI): each sample's "
    "token ids are sent as a token-id prompt and the teacher-forced prompt log-probs that come back are "
    "compared like a local kernel's outputs (docs/runtime.md).",
    {
        "kind": {"const": "openai", "description": "Kernel kind: `openai` scores prompts through a serving API."},
        "url": string("API base, e.g. `http://127.0.0.1:8000/v1` (`${VLLM_URL}` interpolation works); http:// or "
                      "https:// only. SGLang and TGI native routes are taken from the same base without `/v1`. "
                      "Required unless `launch` is given; empty with `launch`: promote starts the server."),
        "model": string("Served model name (vLLM `--served-model-name`)."),
        "api": described_enum(api_docs({
            "vllm": "`/v1/completions` with `prompt_logprobs` (vLLM's extension; default).",
            "openai": "the legacy echo route: `echo`, `logprobs`, `max_tokens: 0`, `return_tokens_as_token_ids`.",
            "sglang": "native `/generate` with `return_logprob`, `logprob_start_len: 0`, `top_logprobs_num`.",
            "tgi": "native `/generate` with `decoder_input_details` (actual tokens only: refused for scoring).",
        }), "Which request/response shape the server speaks. Default `vllm`."),
        "top_k": {"oneOf": [{"const": "all"}, {"type": "integer", "minimum": 1, "maximum": 1_000_000}],
                  "description": "Alternatives per position. `all` (default): the whole vocabulary (vLLM "
                                 "`--max-logprobs -1`), every metric exact. A number K: top-K log-probs plus the "
                                 "actual token's, KL/TV/drift become certified bounds."},
        "timeout_s": number("Total deadline of one attempt in seconds: connect, headers and the whole body "
                             "(docs/runtime.md \"HTTP\"). Default 60.", exclusiveMinimum=0),
        "retries": integer("Retries of a request that failed with 429/5xx, a timeout or a refused connection "
                           "(exponential backoff, `Retry-After` honoured). Default 3.", minimum=0, maximum=100),
        "backoff_s": number("First retry delay in seconds, doubled each retry. Default 0.5.", minimum=0),
        "concurrency": integer("Requests in flight at once. Default 4.", minimum=1, maximum=1024),
        "api_key_env": string("Environment variable holding the API key, sent as a Bearer token and masked in "
                              "every output.", pattern="^[A-Za-z_][A-Za-z0-9_]*$"),
        "batch_size": integer("Samples per step (each is its own request). Default 16.", minimum=1,
                              maximum=BATCH_MAX),
        "launch": launch,
        "server_log": string("The log file of the server at `url` (tools/vllm_server.py prints it as "
                             "`PROMOTE_VLLM_LOG`); when the server answered and then stops answering, the "
                             "message quotes its last lines. Empty: none. A launched server's own log is "
                             "always quoted."),
    },
    ["kind", "model"],
)

KINDS = {name: kind.description for name, kind in KERNEL_KINDS.items()}  # contract/kinds.py
kernel = {
    "description": "How to obtain one kernel's outputs. Chosen by `kind`.",
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": described_enum(KINDS, "Kernel kind.")},
    "oneOf": [torch_kernel, onnx_kernel, records_kernel, openai_kernel],
}
