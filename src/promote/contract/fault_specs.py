"""Typed fault injectors (`inject:` on a kernel spec) and the contract's `calibration:` section.

A contract is only worth trusting once it is shown to fail kernels that violate it; the injectors
plant known faults of realistic size (research/mismatch-facts.md §6) into any candidate kernel,
deterministically given a seed, so `promote calibrate` can tabulate which clauses catch which fault.
The maths lives in ``kernels/inject.py``; this module only turns YAML into checked, frozen specs with
located problems (exit 2), and names the built-in fault presets `calibrate --faults` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promote.contract.kinds import MODULES, capabilities_of
from promote.contract.problems import LoadedDocument, Problem
from promote.registry import Registry

_DESCRIPTIONS = {
    "cast": "round to `dtype` (bf16 | fp16): `scope: logits` rounds the output logits only (|Δz| ≤ |z|·2⁻⁹ for "
            "bf16, 2⁻¹¹ for fp16; fp16 overflows to inf beyond 65504); `scope: model` casts the whole model's "
            "weights and activations (torch kernels; mean KL ~1e-4 for bf16 on small LMs).",
    "tf32": "round every nn.Linear input and weight to TF32 (10 mantissa bits, round to nearest even), as a "
            "TF32 matmul does on any device (torch kernels; logit L∞ ~1e-2, KL ~1e-7).",
    "temperature": "divide the logits by `t` (0.9: KL 0.004–0.03; argmax unchanged).",
    "int8-dynamic": "dynamic int8 quantisation of every nn.Linear, autocast off (torch kernels, CPU; KL ~1e-3, "
                    "10–20× bf16).",
    "noise": "add Gaussian noise of standard deviation `sigma` to the logits at the positions `where` selects "
             "(KL ≈ sigma²/2 × (1 − Σp²) per affected position for small sigma); seeded per sample.",
    "overflow": "fp16 overflow in module `layer` on inputs longer than `longer_than` (N): the module's output "
                "at positions ≥ N becomes ±inf (nan where 0), as an activation beyond 65504 does in fp16; through "
                "masked attention (0·inf) the whole long input usually goes non-finite. Inputs of length ≤ N are "
                "untouched, whatever they are batched with (torch kernels).",
    "layer": "perturb module `module`'s output: multiply by `scale`, then add Gaussian noise of `sigma` × its "
             "RMS, seeded per sample (torch kernels; for localisation).",
}
FAULTS: Registry[str] = Registry("fault")  # fault name -> description (its injector: kernels/inject.py)
for _name, _text in _DESCRIPTIONS.items():
    FAULTS.register(_name, _text)
MODEL_FAULTS = frozenset({"tf32", "int8-dynamic", "overflow", "layer"})  # need a torch module


@dataclass(frozen=True)
class Where:
    """Positions a `noise` fault touches: every condition given must hold (all positions if none)."""

    tags: tuple[tuple[str, str], ...] = ()  # sample tags that must equal these values
    token_ids: tuple[int, int] | None = None  # input token at the position in [lo, hi)
    positions_from: int | None = None  # position t ≥ N

    def describe(self) -> str:
        parts = [f"tags.{k}={v}" for k, v in self.tags]
        if self.token_ids:
            parts.append(f"token ids [{self.token_ids[0]}, {self.token_ids[1]})")
        if self.positions_from is not None:
            parts.append(f"positions ≥ {self.positions_from}")
        return " and ".join(parts) or "every position"


@dataclass(frozen=True)
class FaultSpec:
    """One planted fault; ``params`` hold the fault's own keys (see ``FAULTS``)."""

    fault: str
    dtype: str = "bf16"
    scope: str = "logits"
    t: float = 1.0
    sigma: float = 0.0
    scale: float = 1.0
    layer: str | None = None
    longer_than: int = 0
    where: Where = field(default_factory=Where)
    seed: int = 0

    @property
    def needs_module(self) -> bool:
        return self.fault in MODEL_FAULTS or (self.fault == "cast" and self.scope == "model")

    def describe(self) -> str:
        f = self.fault
        if f == "cast":
            return f"cast {self.scope} to {self.dtype}"
        if f == "temperature":
            return f"temperature {self.t:g}"
        if f == "noise":
            return f"noise σ={self.sigma:g} on {self.where.describe()}"
        if f == "overflow":
            return f"fp16 overflow in {self.layer} at positions ≥ {self.longer_than}"
        if f == "layer":
            return f"perturb {self.layer} (scale {self.scale:g}, σ {self.sigma:g}×RMS)"
        return f


def _where(raw: dict[str, Any] | None) -> Where:
    raw = raw or {}
    ids = raw.get("token_ids")
    return Where(tags=tuple(sorted((str(k), str(v)) for k, v in (raw.get("tags") or {}).items())),
                 token_ids=(int(ids[0]), int(ids[1])) if ids else None, positions_from=raw.get("positions_from"))


def fault_from_dict(raw: dict[str, Any]) -> FaultSpec:
    """A FaultSpec from a schema-valid mapping (`module` is an alias of `layer` for the `layer` fault)."""
    return FaultSpec(fault=raw["fault"], dtype=raw.get("dtype", "bf16"), scope=raw.get("scope", "logits"),
                     t=float(raw.get("t", 1.0)), sigma=float(raw.get("sigma", 0.0)),
                     scale=float(raw.get("scale", 1.0)), layer=raw.get("layer", raw.get("module")),
                     longer_than=int(raw.get("longer_than", 0)), where=_where(raw.get("where")),
                     seed=int(raw.get("seed", 0)))


def fault_problem(raw: dict[str, Any]) -> str | None:
    """What is wrong with a fault mapping beyond the schema (its required keys), or None."""
    fault = raw.get("fault")
    if fault not in FAULTS:
        return f"unknown fault `{fault}`; choose from {', '.join(FAULTS)}"
    needs = {"temperature": ("t",), "noise": ("sigma",), "overflow": ("layer", "longer_than"),
             "layer": ("module",)}.get(fault, ())
    missing = [k for k in needs if k not in raw and not (k == "module" and "layer" in raw)]
    if missing:
        return f"fault `{fault}` needs {', '.join(f'`{k}`' for k in missing)}"
    if fault == "temperature" and not float(raw["t"]) > 0:
        return "fault `temperature`: `t` must be > 0"
    return None


def parse_inject(raw: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Normalise `inject:` (one mapping or a list) to a list; problems as (index-prefixed) messages."""
    items = raw if isinstance(raw, list) else [raw]
    problems = []
    for i, item in enumerate(items):
        msg = fault_problem(item) if isinstance(item, dict) else "a fault is a mapping with a `fault` key"
        if msg:
            problems.append(f"[{i}] {msg}" if isinstance(raw, list) else msg)
    return items, problems


# Built-in faults `promote calibrate --faults NAME` accepts (sizes from research/mismatch-facts.md §6).
BUILTIN_FAULTS: dict[str, dict[str, Any]] = {
    "bf16-model": {"fault": "cast", "dtype": "bf16", "scope": "model"},
    "fp16-model": {"fault": "cast", "dtype": "fp16", "scope": "model"},
    "bf16-logits": {"fault": "cast", "dtype": "bf16", "scope": "logits"},
    "fp16-logits": {"fault": "cast", "dtype": "fp16", "scope": "logits"},
    "tf32": {"fault": "tf32"},
    "temperature-0.9": {"fault": "temperature", "t": 0.9},
    "temperature-1.1": {"fault": "temperature", "t": 1.1},
    "int8-dynamic": {"fault": "int8-dynamic"},
}


@dataclass(frozen=True)
class CalibrationSpec:
    """`calibration:` — named faults, the faults the contract claims to catch, and the split for --derive."""

    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    covers: tuple[str, ...] = ()
    split: float = 0.5
    seed: int = 0
    margin: float = 0.2
    line: int | None = None

    def all_faults(self) -> dict[str, dict[str, Any]]:
        """Built-in presets overlaid with this contract's named faults."""
        return {**BUILTIN_FAULTS, **self.faults}


def parse_calibration(doc: LoadedDocument, raw: dict[str, Any] | None, problems: list[Problem]) -> CalibrationSpec:
    """The typed `calibration:` section; every `covers:` name must be a known fault (located problem)."""
    if raw is None:
        return CalibrationSpec()
    faults = dict(raw.get("faults") or {})
    for name, item in faults.items():
        msg = fault_problem(item)
        if msg:
            problems.append(doc.problem(("calibration", "faults", name), msg))
    known = {**BUILTIN_FAULTS, **faults}
    for i, name in enumerate(raw.get("covers") or []):
        if name not in known:
            problems.append(doc.problem(("calibration", "covers", i), f"`covers` names `{name}`, which is neither a "
                                        f"built-in fault ({', '.join(BUILTIN_FAULTS)}) nor one under "
                                        "`calibration.faults`"))
    return CalibrationSpec(faults=faults, covers=tuple(raw.get("covers") or ()), split=float(raw.get("split", 0.5)),
                           seed=int(raw.get("seed", 0)), margin=float(raw.get("margin", 0.2)),
                           line=doc.locate(("calibration",))[0])


def _has_modules(spec: dict[str, Any]) -> bool:
    """Whether the kernel a raw spec names has modules a model fault can alter (contract/kinds.py)."""
    return MODULES in capabilities_of(str(spec.get("kind", "torch")))


def model_fault_problems(doc: LoadedDocument) -> list[Problem]:
    """A fault that changes the model (a whole-model cast, tf32, int8-dynamic, overflow, layer) can
    only be planted in a `kind: torch` kernel: on any other kernel `inject:` is a contract error, and so
    is such a fault under the calibration's `covers` or `faults` when the candidate is not torch (the
    calibration plants them in the candidate). Found here so that `validate` rejects what `check` and
    `calibrate` could not run."""
    data, problems = doc.data, []
    why = "changes the model, which only a `kind: torch` kernel allows; output faults (cast logits, temperature, " \
          "noise) work on any kernel"

    def needs_module(item: Any) -> bool:
        return isinstance(item, dict) and fault_problem(item) is None and fault_from_dict(item).needs_module

    for role in ("reference", "candidate"):
        spec = data.get(role)
        if not isinstance(spec, dict) or _has_modules(spec) or spec.get("inject") is None:
            continue
        raw = spec["inject"]
        for i, item in enumerate(raw if isinstance(raw, list) else [raw]):
            if needs_module(item):
                path = (role, "inject", i) if isinstance(raw, list) else (role, "inject")
                problems.append(doc.problem(path, f"fault `{item['fault']}` on this `kind: {spec.get('kind')}` "
                                            f"kernel {why}"))
    candidate = data.get("candidate")
    cal = data.get("calibration")
    if not isinstance(cal, dict) or not isinstance(candidate, dict) or _has_modules(candidate):
        return problems
    declared = cal.get("faults") or {}
    for name, item in declared.items():
        if needs_module(item):
            problems.append(doc.problem(("calibration", "faults", name), f"fault `{name}` {why}, and the candidate "
                                        f"is `kind: {candidate.get('kind')}`"))
    for i, name in enumerate(cal.get("covers") or []):
        if name not in declared and needs_module(BUILTIN_FAULTS.get(name)):
            problems.append(doc.problem(("calibration", "covers", i), f"`covers` names `{name}`, which {why}; the "
                                        f"candidate is `kind: {candidate.get('kind')}`"))
    return problems
