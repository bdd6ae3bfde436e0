"""What a records file or rollout dump declares about its values: the value mode (vLLM's
``--logprobs-mode``) and the sampler settings — read and checked here, below the kernels, so every
reader names the file and key of a bad declaration the same way (docs/identity.md).

The identity checks (``identity/semantics.py``, ``identity/sampling.py``) compare the parsed
declarations of the two sides; this module only says what a well-formed declaration is. Torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from promote.errors import UsageError

#: vLLM's ``--logprobs-mode`` values: raw or processed (after the sampler's temperature and penalties),
#: logits or log-probs. Records metadata key ``logprobs_mode`` takes the same.
MODES = ("raw_logits", "raw_logprobs", "processed_logits", "processed_logprobs")
#: Sampler settings compared across sides, with the value that leaves the distribution untouched.
NEUTRAL: dict[str, float] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                             "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
_RANGES = {"temperature": (0.0, math.inf), "top_p": (0.0, 1.0), "min_p": (0.0, 1.0),
           "repetition_penalty": (0.0, math.inf), "presence_penalty": (-math.inf, math.inf),
           "frequency_penalty": (-math.inf, math.inf)}
_EXAMPLE = '{"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}'


def parse_mode(raw: Any, where: str) -> str:
    """A declared value mode, one of ``MODES``; anything else is an error naming ``where``."""
    if raw not in MODES:
        raise UsageError(f"{where}: `logprobs_mode` is {raw!r}; use one of {', '.join(MODES)} (vLLM's "
                         "`--logprobs-mode`: what the values are)")
    return str(raw)


def _setting(key: str, value: Any, where: str) -> float:
    """One setting as a number, in its range; top-k ≤ 0 (vLLM's −1, HF's 0) means off and becomes 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: sampling `{key}` must be a finite number, got {value!r}")
    if key == "top_k":
        if value != int(value):
            raise UsageError(f"{where}: sampling `top_k` must be an integer (−1 or 0: off), got {value!r}")
        return max(int(value), 0)
    low, high = _RANGES[key]
    if value < low or value > high or (key in ("top_p", "repetition_penalty") and value == 0):
        span = {"top_p": "in (0, 1]", "min_p": "in [0, 1]", "temperature": "≥ 0 (0: greedy)",
                "repetition_penalty": "> 0"}.get(key, "finite")
        raise UsageError(f"{where}: sampling `{key}` must be {span}, got {value!r}")
    return float(value)


def parse_sampling(raw: Any, where: str) -> dict[str, float]:
    """Declared sampler settings (a mapping, or its JSON text) → the settings of ``NEUTRAL`` it gives,
    normalised (``top-p`` is ``top_p``; top-k −1 is 0: off). Other keys (``seed``, ``max_tokens``) do not
    shape the distribution and are ignored. ``where`` names the file and key for the error."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: sampling settings are not JSON ({exc.msg}); write an object such as "
                             f"{_EXAMPLE}") from None
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: sampling settings must be an object such as {_EXAMPLE}")
    out: dict[str, float] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name in NEUTRAL:
            out[name] = _setting(name, value, where)
    return out


__all__ = ["MODES", "NEUTRAL", "parse_mode", "parse_sampling"]
