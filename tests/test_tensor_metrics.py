"""Generic tensor metrics (metrics/tensor.py) against straightforward float64 numpy, and key paths."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
import torch

from promote.keypaths import flatten_outputs
from promote.metrics.tensor import (
    Range,
    compile_glob,
    element_metrics,
    spacing,
    tensor_metrics,
    vacuous_reason,
)


def _random(rng, shape, dtype=np.float32):
    ref = (rng.normal(size=shape) * rng.choice([1e-3, 1.0, 1e3], size=shape)).astype(dtype)
    cand = (ref.astype(np.float64) * (1 + rng.normal(size=shape) * 1e-3) + rng.normal(size=shape) * 1e-6)
    return ref, cand.astype(dtype)


def test_element_metrics_match_plain_float64():
    rng = np.random.default_rng(0)
    ref, cand = _random(rng, (7, 300))
    got = element_metrics(ref, cand, ref_dtype="float32", rel_floor=1e-4)
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(c - r)
    np.testing.assert_array_equal(got.abs, diff)
    np.testing.assert_allclose(got.rel, diff / np.maximum(np.abs(r), 1e-4), rtol=1e-15)
    np.testing.assert_allclose(got.ulp, diff / np.spacing(np.abs(ref)).astype(np.float64), rtol=1e-15)
    assert got.floored.sum() == (np.abs(r) < 1e-4).sum() > 0
    assert got.valid.all() and not got.nonfinite.any()


def test_subtraction_happens_after_the_cast_up():
    ref = np.array([[60000.0, 1.0]], dtype=np.float16)
    cand = np.array([[-60000.0, 1.0009765625]], dtype=np.float16)  # fp16 c − r would overflow to inf
    got = element_metrics(ref, cand, ref_dtype="float16")
    np.testing.assert_array_equal(got.abs, [[120000.0, 2.0**-10]])
    np.testing.assert_array_equal(got.ulp, [[120000.0 / 32, 1.0]])  # fp16 ulp is 32 at 60000, 2^-10 at 1


def test_default_rel_floor_is_per_sample_and_zero_reference_gives_inf():
    ref = np.array([[0.0, 1.0, 1e-9], [0.0, 0.0, 0.0]])
    cand = np.array([[1e-7, 1.0, 1e-9], [0.0, 0.5, 0.0]])
    got = element_metrics(ref, cand, ref_dtype="float64")
    assert got.rel[0, 0] == pytest.approx(1e-7 / 1e-6)  # floor = 1e-6 · max|r_row| = 1e-6
    assert got.floored[0].tolist() == [True, False, True]
    assert got.rel[1].tolist() == [0.0, np.inf, 0.0]  # all-zero reference row: c ≠ r is unbounded


def test_ulp_spacing_matches_numpy_and_bf16_rule():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.abs(rng.normal(size=200)) * 10.0 ** rng.integers(-40, 30, size=200), [0.0, 1e-45]])
    for dtype in ("float16", "float32", "float64"):
        xs = x[x < np.finfo(dtype).max].astype(dtype)
        np.testing.assert_array_equal(spacing(xs, dtype), np.spacing(xs).astype(np.float64))
    # bfloat16: next representable value above |x| (torch knows the format), on bf16-representable x
    xb = torch.tensor(x[:200], dtype=torch.float32).to(torch.bfloat16)
    up = torch.nextafter(xb, torch.tensor(float("inf"), dtype=torch.bfloat16))
    want = (up.double() - xb.double()).numpy()
    np.testing.assert_array_equal(spacing(xb.double().numpy(), "bfloat16"), want)
    assert spacing(np.array([0.0]), "bfloat16")[0] == 2.0**-133  # smallest bf16 subnormal
    assert spacing(np.array([5.0]), "int64")[0] == 1.0


def test_tensor_metrics_match_plain_float64():
    rng = np.random.default_rng(2)
    ref, cand = _random(rng, (5, 400), np.float64)
    cosine, sqnr, both_zero = tensor_metrics(ref, cand)
    want_cos = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    want_sqnr = 10 * np.log10((ref**2).sum(1) / ((cand - ref) ** 2).sum(1))
    np.testing.assert_allclose(cosine, want_cos, rtol=1e-12)
    np.testing.assert_allclose(sqnr, want_sqnr, rtol=1e-12)
    assert not both_zero.any()


def test_cosine_keeps_precision_near_one_and_sqnr_edge_cases():
    import mpmath

    ref = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1e300, 1e300, 0]])
    cand = np.array([[1.0, 2.0, 3.0 + 1e-7], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e300, 1e300, 0]])
    cosine, sqnr, both_zero = tensor_metrics(ref, cand)
    mpmath.mp.dps = 40
    a, b = [mpmath.mpf(float(v)) for v in ref[0]], [mpmath.mpf(float(v)) for v in cand[0]]
    exact = mpmath.fsum(x * y for x, y in zip(a, b, strict=True)) / mpmath.sqrt(
        mpmath.fsum(x * x for x in a) * mpmath.fsum(y * y for y in b))
    assert abs(cosine[0] - float(exact)) <= 2**-52  # within an ulp of the exact similarity
    rows = np.random.default_rng(3).normal(size=(50, 333))
    same, _, _ = tensor_metrics(rows, rows.copy())
    assert (same == 1.0).all()  # identical is exactly 1 …
    plain = (rows * rows).sum(1) / (np.linalg.norm(rows, axis=1) ** 2)
    assert (plain != 1.0).any()  # … where r·c / (‖r‖·‖c‖) is off by an ulp on some rows
    assert (tensor_metrics(rows, rows * (1 + 1e-9))[0] <= 1.0).all()  # never above 1
    assert cosine[1] == 1.0 and sqnr[1] == np.inf  # identical → +inf, explicitly
    assert both_zero.tolist() == [False, False, True, False, False]
    assert np.isnan(sqnr[2]) and np.isnan(cosine[2])  # caller leaves both-zero rows out
    assert sqnr[3] == -np.inf and cosine[3] == 0.0  # zero reference, non-zero candidate
    assert sqnr[4] == np.inf and cosine[4] == pytest.approx(1.0)  # huge values do not overflow


def test_nonfinite_elements_are_counted_and_matching_infinities_recognised():
    ref = np.array([[1.0, np.nan, -np.inf, np.inf, 2.0]])
    cand = np.array([[1.0, np.nan, -np.inf, 5.0, np.inf]])
    got = element_metrics(ref, cand, ref_dtype="float64")
    assert got.nonfinite.tolist() == [[0, 2, 2, 1, 1]]
    assert got.valid.tolist() == [[True, False, False, False, False]]
    assert got.matching.tolist() == [[False, False, True, False, False]]  # NaN never "matches"
    assert np.isnan(got.abs[0, 1:]).all() and got.abs[0, 0] == 0


def test_vacuous_reasons():
    def rng_of(*values):
        r = Range()
        r.update(np.array(values, dtype=np.float64))
        return r

    assert "all zeros" in vacuous_reason(rng_of(0, 0), rng_of(0, 0))
    assert "constant" in vacuous_reason(rng_of(3, 3), rng_of(3, 3))
    assert "tiny" in vacuous_reason(rng_of(1e-14, -2e-14), rng_of(0, 1e-13))
    assert vacuous_reason(rng_of(1e-14, -2e-14), rng_of(0, 1e-13), below=1e-15) is None
    assert vacuous_reason(rng_of(0, 0), rng_of(0, 1)) is None  # one side varies: compare it
    assert vacuous_reason(rng_of(np.nan), rng_of(np.nan)) is None  # broken, not vacuous


Pair = namedtuple("Pair", ["left", "right"])


@dataclasses.dataclass
class DataOut:
    pooled: torch.Tensor
    extra: torch.Tensor | None = None


class ModelOutputLike:
    """What HF's ModelOutput offers besides being an OrderedDict: keys() and to_tuple()."""

    def __init__(self, **fields):
        self._fields = {k: v for k, v in fields.items() if v is not None}

    def keys(self):
        return self._fields.keys()

    def to_tuple(self):
        return tuple(self._fields.values())

    def __getattr__(self, name):
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None


def test_flatten_every_container_type_by_key_path():
    t = torch.zeros(2, 3)
    output = {
        "logits": t,
        "hidden_states": (t, t, t, t),
        "out": {"a": {"b": t}},
        "pair": Pair(t, [t, None]),
        "data": DataOut(t),
        "hf": ModelOutputLike(last_hidden_state=t, attentions=None),
        "od": OrderedDict(x=t),
        "a.b": t,
    }
    paths = [p for p, _ in flatten_outputs(output)]
    assert paths == [
        "logits", "hidden_states[0]", "hidden_states[1]", "hidden_states[2]", "hidden_states[3]", "out.a.b",
        "pair.left", "pair.right[0]", "data.pooled", "hf.last_hidden_state", "od.x", '["a.b"]',
    ]
    assert [p for p, _ in flatten_outputs(t)] == ["output"]
    assert [p for p, _ in flatten_outputs((t, {"s": t}))] == ["output[0]", "output[1].s"]
    assert [p for p, _ in flatten_outputs(ModelOutputLike(logits=t))] == ["logits"]
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="deeper than"):
        flatten_outputs(cycle)


def test_key_path_glob_treats_brackets_literally():
    match = compile_glob("hidden_states[3]")
    assert match("hidden_states[3]") and not match("hidden_states3")
    assert compile_glob("hidden_states[*]")("hidden_states[12]")
    assert not compile_glob("hidden_states[*]")("scores")
    assert compile_glob("out.*")("out.a.b") and not compile_glob("out.?")("out.ab")
