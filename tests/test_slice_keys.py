"""Slice-key derivation: tags, numeric buckets, quantiles, crosses, `(missing)`, the value cap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import softmax

from promote.contract.statistical import SliceDef
from promote.stages.slices.keys import KeyInputs, derive, reference_entropy, top2_margin


def sdef(by, *, buckets=None, quantiles=None, max_values=50, name="f"):
    keys = (by,) if isinstance(by, str) else tuple(by)
    return SliceDef(name=name, keys=keys, buckets=buckets, quantiles=quantiles, max_values=max_values, line=1)


def inputs(tags, lengths, position_values=None):
    lengths = np.asarray(lengths)
    seq = np.concatenate([np.full(max(n - 1, 0), i) for i, n in enumerate(lengths)]).astype(np.int64)
    return KeyInputs(tags=tags, lengths=lengths, seq=seq, position_values=position_values or {})


def by_label(family):
    return {s.label: s for s in family.slices}


def test_tag_slices_put_untagged_samples_in_missing_and_say_how_many():
    fam = derive(sdef("tags.script", name="script"),
                 inputs([{"script": "a"}, {}, {"script": "b"}, {"other": "x"}], [3, 3, 3, 3]))
    slices = by_label(fam)
    assert set(slices) == {"script=a", "script=b", "script=(missing)"}
    assert slices["script=(missing)"].samples == 2 and slices["script=(missing)"].positions == 4
    assert any("missing on 2 of 4 samples" in n for n in fam.notes)


def test_hundreds_of_tag_values_are_capped_into_other_with_a_note():
    tags = [{"user": f"u{i:03d}"} for i in range(300)] + [{"user": "u000"}] * 5
    fam = derive(sdef("tags.user", name="user", max_values=10), inputs(tags, [4] * 305))
    slices = by_label(fam)
    assert len(slices) == 10 and "user=(other)" in slices
    assert slices["user=u000"].samples == 6
    assert slices["user=(other)"].samples == 305 - 6 - 8
    assert any("300 distinct values" in n and "max_values 10" in n for n in fam.notes)


def test_explicit_edges_keep_declared_empty_buckets_and_overflow():
    fam = derive(sdef("length", buckets=(2, 4, 100), name="len"), inputs([{}] * 4, [2, 3, 5, 200]))
    slices = by_label(fam)
    assert [s.label for s in fam.slices] == ["len=[2,4)", "len=[4,100)", "len=[100,inf)"]
    assert slices["len=[2,4)"].samples == 2 and slices["len=[100,inf)"].samples == 1
    fam = derive(sdef("length", buckets=(2, 4, 6, 8), name="len"), inputs([{}] * 2, [2, 3]))
    assert by_label(fam)["len=[6,8)"].samples == 0
    assert any("no samples" in n for n in fam.notes)


def test_quantile_buckets_are_equal_count_and_ties_are_reported():
    fam = derive(sdef("length", quantiles=4, name="len"), inputs([{}] * 8, [2, 3, 4, 5, 6, 7, 8, 9]))
    assert [s.samples for s in fam.slices] == [2, 2, 2, 2]
    fam = derive(sdef("length", quantiles=4, name="len"), inputs([{}] * 8, [5] * 7 + [9]))
    assert any("ties leave" in n for n in fam.notes)


def test_position_level_keys_split_sequences_across_slices():
    inp = inputs([{}] * 2, [4, 3])  # positions: seq 0 → t 0,1,2; seq 1 → t 0,1
    inp.position_values["position"] = np.array([0, 1, 2, 0, 1], dtype=float)
    fam = derive(sdef("position", buckets=(0, 1, 2), name="pos"), inp)
    slices = by_label(fam)
    assert fam.position_level
    assert slices["pos=[0,1)"].samples == 2 and slices["pos=[0,1)"].positions == 2
    assert slices["pos=[2,inf)"].samples == 1 and slices["pos=[2,inf)"].members.tolist() == [0]


def test_crossed_slices_label_every_key():
    inp = inputs([{"s": "a"}, {"s": "a"}, {"s": "b"}], [3, 9, 9])
    fam = derive(sdef(["tags.s", "length"], buckets=(0, 5), name="x"), inp)
    assert [s.label for s in fam.slices] == ["x:s=a,length=[0,5)", "x:s=a,length=[5,inf)", "x:s=b,length=[5,inf)"]


def test_sample_level_slice_keeps_samples_without_scored_positions():
    fam = derive(sdef("tags.g", name="g"), inputs([{"g": "short"}, {"g": "long"}], [1, 5]))
    short = by_label(fam)["g=short"]
    assert short.samples == 1 and short.positions == 0


def test_reference_entropy_and_margin_match_scipy():
    z = np.random.default_rng(0).normal(size=(7, 13)) * 3
    np.testing.assert_allclose(reference_entropy(z), sps.entropy(softmax(z, axis=-1), axis=-1), rtol=1e-12)
    s = np.sort(z, axis=-1)
    np.testing.assert_allclose(top2_margin(z), s[:, -1] - s[:, -2])


@pytest.mark.parametrize("vocab", [1])
def test_margin_of_a_single_token_vocabulary_is_infinite(vocab):
    assert np.isinf(top2_margin(np.zeros((3, vocab)))).all()
