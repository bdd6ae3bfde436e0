"""Generate schemas/contract.schema.json (kept in Python so shared pieces are written once).

Run `python tools/gen_contract_schema.py` after editing; a test checks the committed file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from promote.contract.fault_specs import BUILTIN_FAULTS, FAULTS  # noqa: E402 - the fault injectors
from promote.contract.kinds import KINDS as KERNEL_KINDS  # noqa: E402 - the kernel kind registry
from promote.contract.observability_spec import METRIC_STATS  # noqa: E402 - the `metric:` statistics
from promote.contract.promql import DURATION_PATTERN  # noqa: E402
from promote.kernels.openai_api import APIS  # noqa: E402 - the request shapes the openai kernel speaks
from promote.policy import ACTIONS  # noqa: E402 - the policy's actions
from promote.results import Status  # noqa: E402 - clause statuses
from promote.sections import by_section, decls, stage_names  # noqa: E402 - the stage registry
from promote.vocabulary import DEFAULT_TIE_MARGIN, RUNTIME_METRICS  # noqa: E402
from promote.vocabulary import METRICS as VOCABULARY  # noqa: E402 - every metric, with its description

# Metric descriptions are declared with the metric (vocabulary.py); grouped here as the schema lists them.
METRICS = {m.name: m.doc for m in VOCABULARY.values()
           if m.task in ("causal-lm", "both") and m.param not in ("cap", "k")}
# Numerical-stage metrics with a parameter from the clause (`cap`, `k`).
PARAM_METRICS = {m.name: m.doc for m in VOCABULARY.values() if m.task == "causal-lm" and m.param in ("cap", "k")}
# Metrics of `data.task: tensor` (metrics/tensor.py); `nonfinite` is shared with the causal-LM set.
TENSOR_METRICS = {m.name: m.doc for m in VOCABULARY.values() if m.task == "tensor"}
STATS = {
    "mean": "Arithmetic mean over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p50": "Median over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p90": "90th percentile over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p99": "99th percentile over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p99.9": "99.9th percentile over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "max": "Largest value over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "min": "Smallest value over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "sum": "Sum over scored positions or elements (e.g. total non-finite values).",
}
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
STAGES = list(stage_names())
STATUSES = [s.value for s in Status]
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def api_docs(docs: dict[str, str]) -> dict[str, str]:
    """The `api:` values are openai_api.APIS; each needs its line here."""
    if set(docs) != set(APIS):
        raise SystemExit(f"document every openai_api.APIS value (and no other): {sorted(set(docs) ^ set(APIS))}")
    return {api: docs[api] for api in APIS}


def described_enum(values: dict[str, str], description: str) -> dict:
    """An enum whose allowed values are each documented (oneOf of consts keeps per-value text)."""
    return {
        "description": description + " Allowed: " + "; ".join(f"`{k}`: {v}" for k, v in values.items()),
        "enum": list(values),
    }


def obj(description: str, properties: dict, required: list[str] | None = None, **extra) -> dict:
    out = {"type": "object", "description": description, "additionalProperties": False,
           "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


def string(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def number(description: str, **extra) -> dict:
    return {"type": "number", "description": description, **extra}


def integer(description: str, *, maximum: int, **extra) -> dict:
    """Every integer has a cap: a count that large cannot be meant and would exhaust memory or time
    (``quantiles: 1000000000`` once asked for 19 GB). The cap is stated in the description too."""
    return {"type": "integer", "description": f"{description} At most {maximum}.", "maximum": maximum, **extra}


# Caps on sizes (integer keys), each far above any real use and below what exhausts a machine.
BATCH_MAX = 65536
THREADS_MAX = 1024
COUNT_MAX = 1_000_000_000  # counts that only select or compare (data.limit, seq_len, min_samples)


_WARNING_ID_PATTERN = (f"^(chain/{ID_PATTERN[1:-1]}/{ID_PATTERN[1:-1]}|clip/{ID_PATTERN[1:-1]})$")


def consistency(where: str) -> dict:
    """`consistency: {ignore: [...]}`: bound-chain warnings a contract acknowledges (top level or numerical)."""
    return obj(
        "Bound-chain consistency warnings (a logit clause that cannot imply a sibling distribution clause, or "
        f"that exceeds the PPO clip budget) this contract acknowledges. {where}",
        {"ignore": {"type": "array", "uniqueItems": True,
                    "items": {"type": "string", "pattern": _WARNING_ID_PATTERN},
                    "description": "Warning ids not to print, as each warning shows them: `chain/<logit clause "
                                   "id>/<clause id>` (the logit clause does not imply that clause) or `clip/<logit "
                                   "clause id>` (beyond the PPO clip budget). An id that matches no current warning "
                                   "is itself a warning, so a stale entry does not hide a new problem."}},
    )


def clause_common() -> dict:
    return {
        "id": string("Unique clause id (across the whole contract); used in reports, policy rules and annotations.",
                     pattern=ID_PATTERN),
        "description": string("Why this clause exists; shown in the report."),
    }


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

calibration = obj(
    "How `promote calibrate` exercises this contract (docs/calibration.md): which faults it must catch, extra "
    "named faults, and the calibration split `--derive` uses.",
    {
        "faults": {"type": "object", "additionalProperties": fault,
                   "description": "Named faults beyond the built-in ones ("
                                  + ", ".join(f"`{k}`" for k in BUILTIN_FAULTS) + "), e.g. a slice-only fault."},
        "covers": {"type": "array", "uniqueItems": True, "items": {"type": "string"},
                   "description": "Faults (built-in or named under `faults`) this contract claims to catch: "
                                  "`calibrate` exits 1 when one of them is missed."},
        "split": number("`--derive`: fraction of the eval set (by sample, seeded) used to derive bounds; the rest "
                        "checks them out of sample. Default 0.5.", exclusiveMinimum=0, exclusiveMaximum=1),
        "seed": integer("`--derive`: seed of the split. Default 0.", minimum=0, maximum=2**32 - 1),
        "margin": number("`--derive`: relative margin added on top of each derived bound. Default 0.2.",
                         minimum=0, maximum=10),
    },
)


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

data = obj(
    "The evaluation set both kernels are run on.",
    {
        "path": string("JSONL eval set, one sample a line: `id` (unique string), `input_ids` (list of int; "
                       "`task: tensor`: `inputs`, an object of named nested lists), `tags` (string → string). "
                       "Relative to the contract file."),
        "task": {"enum": ["causal-lm", "tensor"], "description": "What the outputs mean. `causal-lm`: logits "
                 "[B,T,V]; position t is scored on predicting input_ids[t+1]. `tensor`: any named or nested "
                 "outputs, compared by key path with the tensor metrics (abs, rel, ulp, cosine, sqnr, "
                 "nonfinite). Default `causal-lm`."},
        "inputs_file": string("`task: tensor` only: safetensors file with inputs named `<sample id>/<input name>` "
                              "(for inputs too large for JSONL; dtypes are kept). Relative to the contract file."),
        "limit": integer("Use only the first N samples (quick local runs). Default: all.", minimum=1,
                     maximum=COUNT_MAX),
    },
    ["path"],
)

SLICE_KEY_PATTERN = ("^(tags\\.[^\\s]+|length|position|token_frequency|entropy|margin|response_position|"
                     "response_length)$")
SLICE_KEYS_TEXT = ("`tags.NAME` (a sample tag; samples without it form a `(missing)` slice), `length` (sequence "
                   "length in tokens), `position` (token position t), `token_frequency` (how often the predicted "
                   "token occurs in the eval set), `entropy` (entropy of the reference distribution, nats), "
                   "`margin` (reference top-1 minus top-2 logit), `response_position` (index of the position "
                   "among its sample's scored positions: 0 = first response token), `response_length` (number of "
                   "scored positions of the sample: the response length of a rollout)")

slice_def = obj(
    "A family of slices of the eval set, judged by the statistical stage (`per_slice` clauses).",
    {
        "name": string("Slice family name; slices are labelled `NAME=VALUE` (e.g. `script=cyrillic`) in reports "
                       "and escalation rules.", pattern=ID_PATTERN),
        "by": {"description": "Key to slice by, or a list of keys for crossed slices (every combination that "
               "occurs). Keys: " + SLICE_KEYS_TEXT + ".",
               "oneOf": [string("One slice key.", pattern=SLICE_KEY_PATTERN),
                         {"type": "array", "items": string("A slice key.", pattern=SLICE_KEY_PATTERN),
                          "minItems": 1, "description": "Crossed slice keys."}]},
        "buckets": {"type": "array", "items": {"type": "number"}, "minItems": 1,
                    "description": "Explicit, strictly increasing bucket edges for numeric keys: "
                    "[e0, e1, …] gives [e0, e1), [e1, e2), …; values below e0 or from the last edge on get "
                    "their own bucket when present. Declared buckets with no samples are reported "
                    "(inconclusive), not dropped."},
        "quantiles": integer("Number of equal-count buckets for numeric keys, from the observed values. "
                             "Default 4 when neither `buckets` nor `quantiles` is given.", minimum=2,
                             maximum=1000),
        "max_values": integer("Most distinct tag values kept as separate slices; the rarest beyond this are merged "
                              "into `(other)` and a note says so. Default 50.", minimum=2,
                              maximum=10_000),
    },
    ["name", "by"],
)

bound_props = {
    "max": number("Upper bound: the clause fails when the observed statistic exceeds it."),
    "min": number("Lower bound: the clause fails when the observed statistic is below it."),
}

numerical_clause = obj(
    "A bound on one statistic of one per-position (or, for `task: tensor`, per-element or per-sample) metric, "
    "reference vs candidate.",
    {
        **clause_common(),
        "metric": described_enum({**METRICS, **PARAM_METRICS, **TENSOR_METRICS}, "Metric; `data.task` decides "
                                 "which are allowed "
                                 "(`tensor:` ones need `task: tensor`, the others `task: causal-lm`; `nonfinite` "
                                 "fits both)."),
        "stat": described_enum(STATS, "Statistic over all scored positions (tensor: over elements, or over "
                               "samples for cosine/sqnr)."),
        **bound_props,
        "cap": number("`ratio_outside`, `ratio_above`, `ratio_below`, `seq_masked` only: the importance-weight "
                      "cap C (weights outside [1/C, C] count; `ratio_above` only w > C, `ratio_below` only "
                      "w < 1/C). Default 2 (verl's and SkyRL's truncated-IS default).", exclusiveMinimum=1),
        "k": integer("`topk_overlap` only: how many top tokens are compared. Default 5.", minimum=1,
                     maximum=1_000_000),
        "max_floor_ratio": number("Upper bound on observed / noise floor (the same statistic of the reference "
                                  "against itself, see `numerical.noise_floor`, which must be set).",
                                  exclusiveMinimum=0),
        "output": string("`task: tensor` only: key-path glob selecting the outputs this clause judges (`*` any "
                         "characters, `?` one; brackets and dots are literal, e.g. `hidden_states[3]`). Each "
                         "matched output is judged separately (one result per output, slice `output=PATH`). "
                         "Default: every output."),
        "rel_floor": number("`task: tensor`, metric `rel` only: denominator floor, rel = |c − r| / max(|r|, "
                            "rel_floor). Default: 1e-6 · max|r| of each sample's tensor. The report says how "
                            "many elements used the floor.", minimum=0),
        "vacuous_below": number("`task: tensor` only: an output whose max |x| is below this on both sides is "
                                "`vacuous` (nothing was compared). Default 1e-12.", minimum=0),
        "on_nonfinite": {"enum": ["fail", "skip-matching", "skip"], "description": "`task: tensor` only: what "
                         "non-finite (NaN/±Inf) elements do to this clause. `fail` (default): any fails it; "
                         "`skip-matching`: elements holding the same ±Inf on both sides (masks) are left out, "
                         "others fail; `skip`: all are left out and only finite pairs are judged (bound them "
                         "with a `nonfinite` clause)."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id", "metric", "stat"],
    anyOf=[{"required": ["max"]}, {"required": ["min"]}, {"required": ["max_floor_ratio"]}],
)

noise_floor = obj(
    "Measure the noise floor: the reference against itself under legitimate perturbations. The floor of a "
    "metric statistic is its largest value over the perturbations; a floor of exactly 0 means the reference "
    "is bitwise reproducible under them.",
    {
        "perturb": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"enum": ["rerun", "batch_size", "odd_batch"], "description": "A perturbation."},
                    "description": "Perturbations: `rerun` (same batches again: nondeterminism), `batch_size` "
                                   "(every sample alone, batch 1 vs N), `odd_batch` (batches of "
                                   "`odd_batch_size`). Each costs one extra pass of each floored kernel. Default "
                                   "[rerun, odd_batch]: the per-sample batch-1 run only when asked."},
        "odd_batch_size": integer("Batch size of the `odd_batch` perturbation. Default 3.", minimum=1,
                                  maximum=BATCH_MAX),
        "kernels": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"enum": ["reference", "candidate"], "description": "A kernel."},
                    "description": "Whose own noise is measured: each kernel against itself under the "
                                   "perturbations. The floor of a statistic is the largest over kernels and "
                                   "perturbations, so a bf16 candidate's own batch noise counts as legitimate. "
                                   "Default [reference]."},
        "cache": string("Directory where measured floors are kept and reused by later runs of the same kernels "
                        "on the same eval set (key: each floored kernel's spec, referenced files' size and "
                        "mtime, fingerprint, the eval set's ids and tokens, the perturbations); relative to the "
                        "contract file. Default: $PROMOTE_FLOOR_CACHE, else no cache (floors are still reused "
                        "within one process, e.g. across `promote calibrate` rows)."),
    },
)

numerical = obj(
    "Stage 1, offline numerics (N): reference vs candidate on the eval set.",
    {
        "clauses": {"type": "array", "items": numerical_clause, "minItems": 1,
                    "description": "Numerical clauses; each bounds one metric statistic."},
        "tie_margin": number("Reference top-2 logit margin below which an argmax flip counts as a tie flip "
                             f"(reported apart). Default {DEFAULT_TIE_MARGIN:g}.", minimum=0),
        "noise_floor": noise_floor,
        "localize": {
            "description": "Activation tier (torch kernels only): record every module's output on both kernels "
                           "and report the first module whose drift exceeds its own noise floor (batch 1 vs N) "
                           "by `factor`, with a per-layer drift profile. `true` uses the defaults.",
            "oneOf": [
                {"type": "boolean", "description": "`true`: localise with default settings."},
                obj("Localisation settings.", {
                    "factor": number("A module diverges when its relative L2 drift exceeds factor × its floor. "
                                     "Default 10.", exclusiveMinimum=0),
                    "max_samples": integer("Localise on the first N samples (hooks keep every module's "
                                           "output of a batch in memory). Default 32.", minimum=1,
                                           maximum=100_000),
                }),
            ],
        },
        "implications": obj(
            "Context for the bounds chain: what the measured logit drift implies for your use "
            "(see `promote bounds`). Reported with every numerics result; `clip` also makes "
            "`promote validate` warn about logit clauses beyond the PPO clip budget.",
            {
                "seq_len": integer("Sequence length T for sequence-level TV and KL bounds.", minimum=1,
                                   maximum=COUNT_MAX),
                "reward_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                                 "description": "Bounded reward [a, b]: |E_p r − E_q r| ≤ (b − a)·TV."},
                "clip": number("PPO clip ε: the budget osc ≤ log(1 + ε).", exclusiveMinimum=0),
                "advantage_max": number("|A| ≤ A_max, for the policy-gradient bias bound.", minimum=0),
                "score_norm": number("‖∇ log π‖ ≤ G, for the policy-gradient bias bound.", minimum=0),
            },
        ),
        "consistency": consistency("Under `numerical`: the same as the top-level `consistency`; both lists count."),
    },
    ["clauses"],
)

NOT_YET = " Not evaluated by this version of promote: when the stage runs its clauses report `error` (never `pass`)."

TASK_METRICS = {m.name: m.doc for m in VOCABULARY.values() if m.task == "paired"}

NOT_PER_SLICE = ("seq_log_ratio", "seq_geo_ratio", "ess", "pg_bias", "clip_budget_used")  # numerics stage only
statistical_clause = obj(
    "A per-slice bound on a divergence metric (`max`/`min`), or a paired comparison of a task metric between "
    "reference and candidate (`max_drop`/`margin`). Verdicts come from confidence intervals: inside the bound → "
    "pass, beyond → fail, straddling → inconclusive.",
    {
        **clause_common(),
        "metric": {"enum": [*(m for m in METRICS if m not in NOT_PER_SLICE), *TASK_METRICS], "description": "A "
                   "per-position numerical metric (judged per slice with a sequence-bootstrap CI; of the RL metrics "
                   "`is_ratio`, `k1`, `k3`, `chi2`) or a task metric. Task metrics: " +
                   " ".join(f"`{k}`: {v}" for k, v in TASK_METRICS.items())},
        "stat": {"enum": [*STATS, "max_over_slices"], "description": "Statistic per slice (numerical metrics; "
                 "`max`/`min`/`sum` are judged on the observed value, without a CI), or `max_over_slices`: judge every "
                 "slice's mean and report the worst slice by name. Default `mean`."},
        **bound_props,
        "max_drop": number("Task metrics: largest allowed drop (reference − candidate, in the metric's units). "
                           "Pass when the whole CI of the candidate − reference difference is ≥ −max_drop.",
                           minimum=0),
        "margin": number("Task metrics: two-sided equivalence margin: pass when the CI of the difference lies in "
                         "[−margin, margin].", minimum=0),
        "per_slice": {"type": "boolean", "description": "Judge the clause in every slice (one result per slice); "
                      "false judges the whole eval set. Default false."},
        "slices": {"type": "array", "items": string("A slice family name."), "minItems": 1,
                   "description": "Slice families this clause uses. Default: all of them."},
        "slice_bounds": {
            "type": "object", "propertyNames": {"minLength": 1},
            "description": "Per-slice bounds (`per_slice` or `max_over_slices` clauses): a mapping from a slice-label "
                           "pattern to the bounds of the slices it matches, so a noisy slice need not set the bound "
                           "of every other. Labels are the report's: `FAMILY=value` (e.g. `script=latin`, "
                           "`length=[0,64)`), crossed families `FAMILY:k=v,k2=v2`. In a pattern `*` matches any run "
                           "of characters and `?` one, everything else is literal. Patterns are tried in order and "
                           "the first match wins; a slice no pattern matches is judged against the clause's own "
                           "bound. Each entry sets only bounds of the clause's own kind (`max`/`min`, or "
                           "`max_drop`/`margin` for task metrics); a bound it leaves out stays the clause's. "
                           "`promote calibrate --derive` writes these where slices differ (docs/calibration.md).",
            "additionalProperties": obj(
                "The bounds of the slices this pattern matches (finite numbers).",
                {
                    "max": number("Upper bound for these slices (the clause has `max`)."),
                    "min": number("Lower bound for these slices (the clause has `min`)."),
                    "max_drop": number("Largest allowed drop for these slices (task metric with `max_drop`).",
                                       minimum=0),
                    "margin": number("Equivalence margin for these slices (task metric with `margin`).", minimum=0),
                },
                minProperties=1,
            ),
        },
        "test": {"enum": ["mcnemar", "wilcoxon", "paired-bootstrap"], "description": "Difference test reported "
                 "(and corrected for multiplicity) for task metrics: `mcnemar` (exact, binary metrics; default "
                 "for them), `wilcoxon` (signed-rank, continuous; default for them), `paired-bootstrap`."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id", "metric"],
)

runtime_clause = obj(
    "A bound on a runtime measurement of the candidate, absolute or against the baseline (docs/runtime.md).",
    {
        **clause_common(),
        "metric": described_enum(RUNTIME_METRICS, "Runtime metric."),
        "stat": described_enum({k: v for k, v in STATS.items() if k in ("mean", "p50", "p90", "p99", "max", "min")},
                               "Statistic over timed requests (latency metrics). Default `p50`."),
        **bound_props,
        "max_ratio": number("Largest allowed candidate / baseline ratio: of the statistic for latency metrics "
                            "and `ttft_ms` (judged on the paired bootstrap CI of the ratio), of the two peaks for "
                            "`peak_memory_mb`.", exclusiveMinimum=0),
        "require": {"type": "boolean", "description": "`rerun_equal`/`batch_invariance`: `true` demands bitwise "
                    "equal values."},
        "concurrency": integer("Which measured load level the clause reads (one of `runtime.concurrency`). "
                               "Default 1.", minimum=1, maximum=1024),
        "paired": {"type": "boolean", "description": "`max_ratio`: `true` (default) judges paired per-request "
                   "ratios (same prompts both sides) by bootstrap; `false` treats traffic as unpaired and uses "
                   "the Mann–Whitney U test."},
    },
    ["id", "metric"],
)

DURATION = DURATION_PATTERN  # the pattern contract/promql.parse_duration accepts


def duration(description: str) -> dict:
    return string(description + " A Prometheus duration: `30s`, `5m`, `1h30m` (units ms s m h d w y).",
                  pattern=DURATION)


OBS_STAT_DOCS = {
    "value": "each matched series judged on its own (one result per series, its labels in the report)",
    "sum": "sum over the matched series (grouped by `by` and the `compare` label)",
    "min": "smallest value over the matched series (grouped likewise)",
    "max": "largest value over the matched series (grouped likewise)",
    "count": "number of matched series (grouped likewise)",
    "mean": "histogram or summary mean: `<name>_sum` / `<name>_count` (grouped likewise)",
    "p50": "histogram median from `<name>_bucket`, interpolated as Prometheus' histogram_quantile does",
    "p90": "histogram 90th percentile (histogram_quantile)",
    "p95": "histogram 95th percentile (histogram_quantile)",
    "p99": "histogram 99th percentile (histogram_quantile)",
    "p99.9": "histogram 99.9th percentile (histogram_quantile)",
}
OBS_STATS = {stat: OBS_STAT_DOCS[stat] for stat in METRIC_STATS}  # a KeyError: document the new statistic
burn_window = obj(
    "A long/short window pair (Google SRE workbook multiwindow burn-rate alerting): the pair fails only when "
    "the burn rate over both windows exceeds `factor`, so a spike that has ended (short window clean) or a blip "
    "too short to matter (long window clean) does not block.",
    {
        "long": duration("Long window (e.g. `1h`): how much of the error budget has burnt."),
        "short": duration("Short window (e.g. `5m`, 1/12 of the long one): is it still burning now."),
        "factor": number("Largest allowed burn rate (error ratio / (1 − objective)) over both windows: 14.4 for "
                         "1h/5m (2 % of a 30-day budget), 6 for 6h/30m (5 %). Omit in relative clauses "
                         "(`max_ratio` bounds those).", exclusiveMinimum=0),
    },
    ["long", "short"],
)
observability_clause = obj(
    "One sign-off check against live monitoring or a snapshot: a PromQL `query`, a `metric` selector, or a "
    "`burn_rate` SLO, with bounds (`max`/`min`), presence (`require`), freshness (`max_age`), or a comparison "
    "of the canary with the stable version (`compare`/`baseline_query` with `max_ratio`/`min_ratio`). Every "
    "result names the series' labels. Missing data never passes (`on_missing`).",
    {
        **clause_common(),
        "query": string("PromQL expression (`source.kind: prometheus`), evaluated at `source.time` (an instant "
                        "query), or over `window` (a range query). It must return an instant vector or a scalar; "
                        "a range vector (`x[5m]`) is a contract error."),
        "metric": string("Metric selector `name{label=\"value\", other=~\"re.*\"}` (operators = != =~ !~); the "
                         "same selector works on a Prometheus source and on a snapshot file. For histograms, name "
                         "the base metric (`vllm:e2e_request_latency_seconds`) with `stat: p99` or `mean`; on "
                         "Prometheus the values are the cumulative ones at `source.time` (use `query:` for rates)."),
        "stat": described_enum(OBS_STATS, "`metric:` only: what is judged. Default `value`."),
        "by": {"type": "array", "items": string("A label name."), "uniqueItems": True,
               "description": "`metric:` with an aggregating stat: labels kept apart (one result per combination), "
                              "like PromQL's `sum by (...)`. Default: aggregate everything (plus the `compare` "
                              "label)."},
        **bound_props,
        "require": {"enum": ["present"], "description": "`present`: at least one series must exist (at "
                    "`source.time`, or within `source.lookback` for a `metric:` on Prometheus)."},
        "max_age": duration("`metric:` only: largest allowed age of each series' newest sample at `source.time` "
                            "(snapshot files: the sample's timestamp, else the file's modification time)."),
        "window": duration("Prometheus only: evaluate over this window ending at `source.time` (a range query) and "
                           "judge `over_time` of each series."),
        "over_time": {"enum": ["max", "min", "mean", "last"], "description": "With `window`: the statistic over "
                      "time judged per series. Default `max` (the worst moment of the window for a `max` bound)."},
        "step": duration("With `window`: the range query's resolution. Default window/60, at least 1s."),
        "compare": obj("Canary vs stable from one query: the result is split by `label`; each `candidate` series is "
                       "divided by the `baseline` series with the same other labels and the ratio is bounded by "
                       "`max_ratio`/`min_ratio`. 0/0 is 1; x/0 is +inf (fails a `max_ratio`).", {
                           "label": string("Label telling the versions apart, e.g. `version`."),
                           "candidate": string("Its value on the canary's series, e.g. `canary`."),
                           "baseline": string("Its value on the stable version's series, e.g. `stable`."),
                       }, ["label", "candidate", "baseline"]),
        "baseline_query": string("Prometheus only: PromQL for the baseline (stable) side; the clause's `query` is the "
                                 "candidate side. Series are paired by identical labels (a single unlabelled "
                                 "baseline applies to every candidate series)."),
        "max_ratio": number("Relative clauses: largest allowed candidate / baseline (e.g. 1.2: the canary may burn "
                            "at most 20 % faster than stable).", minimum=0),
        "min_ratio": number("Relative clauses: smallest allowed candidate / baseline.", minimum=0),
        "burn_rate": obj("Prometheus only: SLO burn rate = error ratio over a window / (1 − objective). Absolute: "
                         "each window pair fails when both windows burn faster than its `factor`. With `compare` "
                         "(or `baseline_query`): the candidate's burn rate over the baseline's in each window, "
                         "bounded by `max_ratio` (fails when both windows of a pair exceed it).", {
                             "objective": number("SLO objective as a fraction, e.g. 0.999 (the error budget is "
                                                 "0.001).", exclusiveMinimum=0, exclusiveMaximum=1),
                             "errors": string("PromQL for the rate of bad events, with `{{window}}` where the "
                                              "range goes: `sum(rate(requests_total{code=~\"5..\"}[{{window}}]))`."
                                              " Keep the `compare` label (`sum by (version)`) in relative clauses."),
                             "total": string("PromQL for the rate of all events, with `{{window}}`."),
                             "windows": {"type": "array", "items": burn_window, "minItems": 1,
                                         "description": "Window pairs. Default: 1h/5m at 14.4 and 6h/30m at 6 "
                                                        "(SRE workbook, 30-day budget). Tests and short canaries "
                                                        "scale them down (docs/observability.md)."},
                         }, ["objective", "errors", "total"]),
        "on_missing": {"enum": ["fail", "inconclusive", "skip"], "description": "Status when there is no data (no "
                       "series, or no candidate/baseline pair): `fail` (default: fails closed), `inconclusive` "
                       "(the policy decides; the default policy blocks), `skip` (reported as skipped, never as "
                       "pass)."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id"],
)


def stage(section: str, description: str, extra: dict, clause: dict) -> dict:
    decl = by_section(section)
    return obj(f"{decl.title}{description}" + ("" if decl.evaluated else NOT_YET), {
        **extra,
        "clauses": {"type": "array", "items": clause, "minItems": 1, "description": "Clauses of this stage."},
    }, ["clauses"])


statistical = obj(
    "Stage 2, statistical slice tests (S): per-slice divergences with sequence-bootstrap confidence intervals, "
    "paired task-metric tests, multiplicity control, three-way verdicts. See docs/statistics.md.",
    {
        "alpha": number("Level of each one-sided test; intervals are two-sided 1 − 2·alpha (TOST). Default 0.05.",
                        exclusiveMinimum=0, exclusiveMaximum=0.5),
        "correction": {"enum": ["holm", "bh", "none"], "description": "Multiple-comparison correction of the "
                       "`fail` claims across all slices and clauses of the stage: `holm` (family-wise error; the "
                       "default, for blocking gates), `bh` (false discovery rate; exploratory), `none`."},
        "min_samples": integer("Slices with fewer scored sequences are `inconclusive`, never pass. Default 30.",
                               minimum=2, maximum=COUNT_MAX),
        "resamples": integer("Bootstrap resamples per interval. The smallest bootstrap p-value is "
                             "1/(resamples + 1). Default 2000.", minimum=99, maximum=100_000),
        "seed": integer("Seed of the bootstrap (results are reproducible). Default 0.", minimum=0,
                    maximum=2**32 - 1),
        "power": number("Power used for the minimum detectable effect reported per slice. Default 0.8.",
                        exclusiveMinimum=0, exclusiveMaximum=1),
        "clauses": {"type": "array", "items": statistical_clause, "minItems": 1,
                    "description": "Clauses of this stage."},
    },
    ["clauses"],
)
runtime = stage(
    "runtime", ": latency, throughput, errors, memory and determinism of the candidate, measured paired with a "
    "baseline (docs/runtime.md).",
    {
        "warmup": integer("Untimed warm-up requests per kernel (reported apart). Default 0.", minimum=0,
                          maximum=1_000_000),
        "repeats": integer("Timed passes over the requests at each concurrency. Default 1.", minimum=1,
                           maximum=1_000_000),
        "requests": integer("Eval-set samples used as requests (the first N). Default all.", minimum=1,
                            maximum=COUNT_MAX),
        "concurrency": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 1024},
                        "minItems": 1, "description": "Load levels measured: requests in flight at once "
                        "(`openai`), or samples per batch (local kernels). Level 1 is always measured. "
                        "Default [1]."},
        "baseline": {**kernel, "description": "The kernel the candidate's runtime is compared "
                     "with (e.g. the serving build in production). Default: the reference kernel."},
        "alpha": number("Level of each one-sided test; intervals are two-sided 1 − 2·alpha/looks. Default 0.05.",
                        exclusiveMinimum=0, exclusiveMaximum=0.5),
        "looks": integer("How many times the canary window will be judged: each look spends alpha/looks "
                         "(Bonferroni alpha spending), so repeated looks do not inflate false alarms. Default 1.",
                         minimum=1, maximum=10_000),
        "resamples": integer("Bootstrap resamples per interval. Default 2000.", minimum=99, maximum=100_000),
        "seed": integer("Seed of the bootstrap. Default 0.", minimum=0, maximum=2**32 - 1),
    },
    runtime_clause,
)
observability = stage(
    "observability", ": live monitoring (a Prometheus HTTP API) or exposition-format snapshot files. Reads "
    "no eval set and runs no kernel: a contract whose only stage is this one needs no `reference`, `candidate` "
    "or `data` (and never reads `data.path` when it has them). See "
    "docs/observability.md.",
    {
        "source": obj("Where metrics are read from.", {
            "kind": {"enum": ["prometheus", "file"], "description": "`prometheus`: a Prometheus HTTP API "
                     "(`/api/v1/query`, `/api/v1/query_range`). `file`: Prometheus text or OpenMetrics snapshot "
                     "files (e.g. the runtime stage's `--metrics-out`), read with prometheus_client's parser."},
            "url": string("Prometheus base URL, e.g. `http://127.0.0.1:9090` (`kind: prometheus`)."),
            "path": {"description": "`kind: file`: snapshot file(s), relative to the contract file; several "
                     "files are read as one (a series in two files is an error).",
                     "oneOf": [string("One snapshot file."),
                               {"type": "array", "items": string("A snapshot file."), "minItems": 1,
                                "description": "Several snapshot files."}]},
            "time": {"type": ["string", "number"], "description": "Evaluation time: unix seconds or RFC 3339 "
                     "(`2026-01-02T03:04:05Z`). Default: now. Recorded in the report."},
            "timeout": duration("Total deadline of each request, connect to last byte (`kind: prometheus`). "
                                "Default `10s`."),
            "lookback": duration("How far back `require: present` and `max_age` look for a `metric:`'s newest "
                                 "sample on Prometheus. Default `1h`."),
            "tls_verify": {"type": "boolean", "description": "Verify the server's TLS certificate. Default true."},
            "ca_file": string("CA bundle to verify the server with (relative to the contract file)."),
            "auth": obj("Credentials, read from environment variables whose names are given here (the values are "
                        "never printed or written to a report).", {
                            "kind": {"enum": ["basic", "bearer"], "description": "`basic`: HTTP basic auth; "
                                     "`bearer`: `Authorization: Bearer <token>`."},
                            "username_env": string("`basic`: variable holding the user name."),
                            "password_env": string("`basic`: variable holding the password."),
                            "token_env": string("`bearer`: variable holding the token."),
                        }, ["kind"]),
        }, ["kind"]),
    },
    observability_clause,
)

rule = obj(
    "One escalation rule: the first rule whose `when` matches a clause result decides its action. The report "
    "quotes the rule (`escalation.rules[i]` and its conditions) next to every action it takes.",
    {
        "when": obj("Conditions, all of which must match; omitted conditions match anything, except that a rule "
                    "without `status` matches only clauses that did not pass (not `pass`/`skipped`).", {
            "stage": {"enum": STAGES, "description": "Stage the clause belongs to."},
            "clause": string("Clause id or shell-style glob (e.g. `kl-*`)."),
            "status": {"description": "Clause status (or list of statuses) to match. Omitted: any status except "
                       "`pass` and `skipped`, so a rule never acts on passing clauses unless it says `status: pass`.",
                       "oneOf": [{"enum": STATUSES, "description": "One status."},
                                 {"type": "array", "items": {"enum": STATUSES}, "minItems": 1,
                                  "description": "Any of these statuses."}]},
            "slice": string("Shell-style glob on the slice a clause was evaluated on, written `name=value` "
                            "(e.g. `script=*`, `length=256-*`). A rule with `slice` never matches a clause "
                            "evaluated on all data."),
        }),
        "action": {"enum": list(ACTIONS), "description": "Action taken: `pass` (accept), `warn` (accept, flagged), "
                   "`shadow-only` (serve the candidate in shadow only), `route-to-reference` (promote, but the "
                   "matched slices must fall back to the reference kernel; the report lists them), `rollback` "
                   "(revert a deployed candidate), `block` (refuse promotion). Severity increases in that order; "
                   "the verdict is the most severe action, and shadow-only or worse fails the gate (exit 1)."},
    },
    ["when", "action"],
)

escalation = obj(
    "Escalation policy Π: maps clause results to actions; the verdict is the most severe action. A clause that "
    "could not be evaluated (`error`) makes the verdict `error` (exit 3) whatever the rules say.",
    {
        "default": {"enum": list(ACTIONS), "description": "Action for a violated clause (fail, vacuous, inconclusive) "
                    "that no rule matches. Default `block`."},
        "rules": {"type": "array", "items": rule, "description": "Ordered rules; the first match wins."},
    },
)

BUILT_IN_SECTIONS = {"numerical": numerical, "statistical": statistical, "runtime": runtime,
                     "observability": observability}


def section_schema(decl) -> dict:  # noqa: ANN001 - a sections.StageDecl
    """A stage's section schema: its package's fragment (``stages.api.Stage.schema``), or the built-in one
    above for the stages whose fragments are still written here."""
    stage = decl.implementation()
    return (stage.schema() if stage is not None else None) or BUILT_IN_SECTIONS[decl.section]


# What each stage section needs at the top level, from sections.py: a contract whose only stage reads
# live monitoring (observability) needs no kernels and no eval set; `numerical` without `reference` is
# an error at the `numerical` key (contract/schema_messages.py words it).
DEPENDENT_REQUIRED = {
    d.section: [*(("reference", "candidate") if d.needs_kernels else ()), *(("data",) if d.needs_evalset else ())]
    for d in decls() if d.needs_kernels or d.needs_evalset
}
KERNEL_STAGES = " (" + ", ".join(f"`{d.section}`" for d in decls() if d.needs_kernels) + ")"
DATA_STAGES = " (" + ", ".join(f"`{d.section}`" for d in decls() if d.needs_evalset) + ")"

schema = obj(
    "A kernel contract: how far a candidate (inference) kernel may drift from its reference kernel. Every "
    "number must be finite (`.nan`, `.inf` are errors), integers are written as integers and are capped "
    "(`maximum`), and no string may contain a NUL character.",
    {
        "$schema": string("Optional JSON Schema URI, for editors."),
        "version": {"const": 1, "description": "Contract DSL version. Must be 1."},
        "name": string("Contract name, shown in reports and used in the PR comment marker.", minLength=1,
                       maxLength=200),
        "description": string("What this contract protects and why."),
        "reference": {**kernel, "description": "The reference kernel K_ref (e.g. the fp32 training kernel). "
                      "Required when a stage that runs the kernels is present" + KERNEL_STAGES + "."},
        "candidate": {**kernel, "description": "The candidate kernel K_cand being promoted. Required when a stage "
                      "that runs the kernels is present" + KERNEL_STAGES + "."},
        "data": {**data, "description": data["description"] + " Required when a stage that reads the eval set is "
                 "present" + DATA_STAGES + "."},
        "slices": {"type": "array", "items": slice_def, "description": "Slice families (statistical stage)."},
        **{d.section: section_schema(d) for d in decls()},
        "consistency": consistency("Top level: applies to the whole contract (the same as "
                                   "`numerical.consistency`)."),
        "escalation": escalation,
        "calibration": calibration,
    },
    ["version", "name"],
    dependentRequired=DEPENDENT_REQUIRED,
)
schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://promote.dev/schemas/contract.schema.json", "title": "promote kernel contract", **schema}

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "schemas" / "contract.schema.json"
    out.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
