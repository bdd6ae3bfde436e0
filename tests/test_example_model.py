"""The embedded example (examples/tiny_lm): the model code, its committed weights and its eval set.

`promote check examples/tiny_lm/contract.yaml` is the first thing a user runs, so these tests pin
what that run relies on: the weights load strictly into ``build()``, the forward pass is
deterministic and unaffected by right padding (the eval runner pads batches on the right), the
eval set is well formed and covers every script, and the model has actually learned something
(a random model would make every divergence metric meaningless).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"
WEIGHTS = EXAMPLE / "weights.safetensors"
EVAL = EXAMPLE / "eval.jsonl"
SCRIPTS = {"latin", "cyrillic", "cjk", "code"}


def _import(name: str) -> ModuleType:
    """Import ``examples/tiny_lm/<name>.py`` by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tiny_lm_{name}_under_test", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny() -> ModuleType:
    return _import("model")


@pytest.fixture(scope="module")
def net(tiny: ModuleType) -> torch.nn.Module:
    from safetensors.torch import load_file

    module = tiny.build()
    module.load_state_dict(load_file(str(WEIGHTS)), strict=True)
    return module.eval()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ids(text: str) -> torch.Tensor:
    return torch.tensor([list(text.encode("utf-8"))], dtype=torch.long)


# --- weights -------------------------------------------------------------------------------------


def test_weights_file_is_small_enough_to_ship() -> None:
    assert WEIGHTS.stat().st_size <= 2_000_000


def test_weights_match_build_exactly(tiny: ModuleType) -> None:
    from safetensors.torch import load_file

    state = load_file(str(WEIGHTS))
    module = tiny.build()
    expected = module.state_dict()
    assert sorted(state) == sorted(expected)
    for key, tensor in state.items():
        assert tensor.dtype == torch.float32, key
        assert tensor.shape == expected[key].shape, key
        assert torch.isfinite(tensor).all(), key
    result = module.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# --- forward pass --------------------------------------------------------------------------------


def test_forward_returns_logits_tensor(tiny: ModuleType, net: torch.nn.Module) -> None:
    ids = torch.randint(0, 256, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(ids)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 17, tiny.VOCAB_SIZE) == (3, 17, 256)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_full_context_accepted_and_longer_rejected(tiny: ModuleType, net: torch.nn.Module) -> None:
    with torch.no_grad():
        assert net(torch.zeros(1, tiny.MAX_CONTEXT, dtype=torch.long)).shape == (1, 256, 256)
        with pytest.raises(ValueError, match="exceeds"):
            net(torch.zeros(1, tiny.MAX_CONTEXT + 1, dtype=torch.long))


def test_named_submodules_for_hooks(net: torch.nn.Module) -> None:
    names = dict(net.named_modules())
    for name in ("tok_emb", "pos_emb", "blocks.0.attn", "blocks.0.mlp", "blocks.0.ln_1", "ln_f", "head"):
        assert name in names, name
    assert f"blocks.{len(net.blocks) - 1}.mlp" in names


def test_forward_is_deterministic(net: torch.nn.Module) -> None:
    ids = _ids("Determinism: the same bytes in, the same logits out. Детерминизм. 決定性。")
    with torch.no_grad():
        first, second = net(ids), net(ids)
    assert torch.equal(first, second)


def test_build_does_not_depend_on_weights(tiny: ModuleType, net: torch.nn.Module) -> None:
    """A fresh build() is untrained: the loaded weights are what makes the model (guards the fixture)."""
    ids = _ids("The weights matter.")
    with torch.no_grad():
        fresh = tiny.build().eval()(ids)
        trained = net(ids)
    assert not torch.allclose(fresh, trained)


def test_pad_values_cannot_reach_real_positions(net: torch.nn.Module) -> None:
    """Same batch shape, different pad bytes: the logits at real positions are bitwise equal.

    This is the leakage check proper: with causal attention a pad byte after position t gets
    exactly zero weight at t, whatever its value. (Any attention to later bytes would fail it.)
    """
    texts = ["Short one.", "A much longer sequence, so the first row gets right-padded.", "Ещё.", "def f(x):"]
    rows = [list(t.encode("utf-8")) for t in texts]
    width = max(len(r) for r in rows) + 5
    outs = []
    with torch.no_grad():
        for pad_id in (0, 32, 255):
            batch = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
            outs.append(net(batch))
    for out in outs[1:]:
        for i, row in enumerate(rows):
            assert torch.equal(out[i, : len(row)], outs[0][i, : len(row)]), texts[i]


def test_right_padding_does_not_change_real_positions(net: torch.nn.Module) -> None:
    """Each row alone vs. the same row right-padded inside a batch: equal up to fp32 rounding.

    Not bitwise: a different [B, T] shape changes how the matmul/attention kernels block their
    reductions, which moves fp32 logits (|logit| up to ~30) by ~1e-5. Hence atol 1e-5 plus
    rtol 1e-5; a real leak of pad bytes moves them by orders of magnitude more.
    """
    texts = ["Short one.", "A much longer sequence, so the first row gets right-padded with zeros.", "Ещё."]
    rows = [list(t.encode("utf-8")) for t in texts]
    width = max(len(r) for r in rows)
    for pad_id in (0, 32, 255):
        batch = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
        with torch.no_grad():
            padded = net(batch)
            for i, row in enumerate(rows):
                alone = net(torch.tensor([row], dtype=torch.long))[0]
                torch.testing.assert_close(padded[i, : len(row)], alone, atol=1e-5, rtol=1e-5)


def test_padding_changes_positions_after_it(net: torch.nn.Module) -> None:
    """Sanity check on the test above: the model does look at earlier bytes (it is not position-wise)."""
    with torch.no_grad():
        a = net(_ids("cat sat"))[0, -1]
        b = net(_ids("dog sat"))[0, -1]
    assert not torch.allclose(a, b, atol=1e-3)


# --- eval set ------------------------------------------------------------------------------------


def test_eval_set_is_well_formed(records: list[dict]) -> None:
    assert len(records) >= 300
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert set(r) == {"id", "input_ids", "tags", "text"}, r["id"]
        tokens = r["input_ids"]
        assert 2 <= len(tokens) <= 256, r["id"]
        assert all(isinstance(t, int) and 0 <= t <= 255 for t in tokens), r["id"]
        assert bytes(tokens) == r["text"].encode("utf-8"), r["id"]
        assert r["tags"]["script"] in SCRIPTS, r["id"]
        assert isinstance(r["tags"]["lang"], str) and r["tags"]["lang"], r["id"]


def test_eval_set_covers_every_script_and_length(records: list[dict]) -> None:
    per_script = Counter(r["tags"]["script"] for r in records)
    assert set(per_script) == SCRIPTS
    assert min(per_script.values()) >= 60, per_script
    langs = {r["tags"]["lang"] for r in records}
    assert {"en", "fr", "de", "es", "ru", "uk", "zh", "ja", "py"} <= langs
    lengths = [len(r["input_ids"]) for r in records]
    assert min(lengths) <= 32
    assert sum(n >= 200 for n in lengths) >= 40


def test_eval_set_is_held_out(records: list[dict]) -> None:
    """No sample of 48+ bytes appears verbatim in the training text."""
    train = "\n".join(p.read_text(encoding="utf-8") for p in (EXAMPLE / "corpus").glob("*.txt")
                      if not p.stem.endswith("_eval"))
    assert len(train) > 10_000
    leaked = [r["id"] for r in records if len(r["input_ids"]) >= 48 and r["text"] in train]
    assert not leaked


def test_eval_set_is_what_make_eval_writes() -> None:
    """eval.jsonl is up to date with make_eval.py and the held-out corpus (the generator is deterministic)."""
    make_eval = _import("make_eval")
    assert make_eval.render(make_eval.build_records()) == EVAL.read_text(encoding="utf-8")


# --- the model has learned -----------------------------------------------------------------------


def test_model_has_learned_the_eval_text(net: torch.nn.Module, records: list[dict]) -> None:
    """Mean next-byte cross-entropy on held-out text is far below uniform (log 256 ≈ 5.55 nats)."""
    total: Counter[str] = Counter()
    count: Counter[str] = Counter()
    ordered = sorted(records, key=lambda r: len(r["input_ids"]))
    with torch.no_grad():
        for start in range(0, len(ordered), 32):
            chunk = ordered[start : start + 32]
            width = max(len(r["input_ids"]) for r in chunk)
            ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in chunk])
            logp = F.log_softmax(net(ids), dim=-1)
            for row, r in enumerate(chunk):
                n = len(r["input_ids"])
                nll = -logp[row, : n - 1].gather(1, ids[row, 1:n, None]).sum().item()
                total[r["tags"]["script"]] += nll
                count[r["tags"]["script"]] += n - 1
    per_script = {s: total[s] / count[s] for s in count}
    overall = sum(total.values()) / sum(count.values())
    assert overall < 3.0, per_script
    for script, loss in per_script.items():
        assert loss < 4.0, (script, loss)
    assert overall < math.log(256) - 2.0
