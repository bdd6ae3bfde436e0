"""Sampled-token rollouts (identity/sampling.py, data/sampler.py): sampler settings recorded on both
sides and equal, a tempered or truncated sampler flagged, sampled ids, masks and lengths equal per
position. Real rollouts: the shipped example dump of the tiny LM (examples/rl_rollouts), converted with
promote's own converter and read back through the records reader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from promote.data.rollouts import read_rollouts
from promote.data.sampler import parse_mode, parse_sampling
from promote.errors import UsageError
from promote.identity.sampling import (
    SamplerSide,
    check_against_evalset,
    check_sampled_tokens,
    check_sampling_settings,
    record_rows,
)
from promote.kernels.records import RecordSet, write_records
from promote.rl import write_rollouts

DUMP = Path(__file__).resolve().parents[1] / "examples" / "rl_rollouts" / "rollouts" / "honest" / "rollouts.jsonl"
NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}


def _pair(root: Path, rollouts=None, **kwargs) -> tuple[RecordSet, RecordSet]:
    paths = write_rollouts(rollouts if rollouts is not None else read_rollouts(DUMP), root, **kwargs)
    return (RecordSet(paths["trainer"], "trainer.safetensors"), RecordSet(paths["engine"], "engine.safetensors"))


def _sides(trainer: RecordSet, engine: RecordSet) -> tuple[SamplerSide, SamplerSide]:
    def side(role, recs):
        return SamplerSide(role, f"{role} ({recs.display})", recs.declared.get("sampling"),
                           f"metadata `sampling` of {recs.display}", recs.declared.get("logprobs_mode"))
    return side("reference", trainer), side("candidate", engine)


# --- reading declarations -------------------------------------------------------------------------

def test_parse_sampling_normalises_and_names_the_bad_key():
    assert parse_sampling({"temperature": 0.7, "top-p": 0.9, "top_k": -1, "seed": 3}, "f.safetensors") == {
        "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    assert parse_sampling('{"min_p": 0.05}', "x") == {"min_p": 0.05}
    for raw, key in (({"top_p": 0}, "top_p"), ({"temperature": -1}, "temperature"), ({"top_k": 2.5}, "top_k"),
                     ({"min_p": True}, "min_p"), ({"temperature": float("nan")}, "temperature")):
        with pytest.raises(UsageError, match=rf"f\.safetensors: sampling `{key}`"):
            parse_sampling(raw, "f.safetensors")
    with pytest.raises(UsageError, match="not JSON"):
        parse_sampling("{temperature: 1", "x")
    with pytest.raises(UsageError, match="must be an object"):
        parse_sampling([1.0], "x")
    with pytest.raises(UsageError, match="raw_logprobs"):
        parse_mode("logprobs", "x")


def test_records_carry_declarations_and_refuse_bad_ones(tmp_path):
    trainer, engine = _pair(tmp_path, sampling={"engine": {"temperature": 0.7, "top_p": 0.95},
                                                "trainer": {"temperature": 0.7, "top_p": 0.95}},
                            logprobs_mode={"engine": "raw_logprobs"})
    assert engine.declared == {"logprobs_mode": "raw_logprobs", "sampling": {"temperature": 0.7, "top_p": 0.95}}
    assert trainer.declared == {"sampling": {"temperature": 0.7, "top_p": 0.95}}
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "engine.safetensors"))
    meta = {"ids": json.dumps(sorted(engine.where, key=lambda i: engine.where[i])), "sampling": '{"top_p": 2}'}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(UsageError, match=r"bad\.safetensors: metadata `sampling`: sampling `top_p` must be in"):
        RecordSet(tmp_path / "bad.safetensors", "bad.safetensors")
    with pytest.raises(UsageError, match="`logprobs_mode` is 'raw'"):
        write_records(tmp_path / "x.safetensors", ["a"], [[1, 2]], [[True, False]], target_logprobs=[[-1.0, 0.0]],
                      logprobs_mode="raw")
    with pytest.raises(ValueError, match="keyed `engine` and `trainer`"):
        write_rollouts(read_rollouts(DUMP)[:2], tmp_path / "y", sampling={"candidate": NEUTRAL})


def test_shards_of_one_set_declare_alike(tmp_path):
    rows = dict(input_ids=[[1, 2, 3]], mask=[[True, True, False]], target_logprobs=[[-1.0, -2.0, 0.0]])
    write_records(tmp_path / "set" / "a.safetensors", ["a"], **rows, sampling=NEUTRAL)
    write_records(tmp_path / "set" / "b.safetensors", ["b"], **rows, sampling={**NEUTRAL, "temperature": 0.6})
    with pytest.raises(UsageError, match="one record set, one declaration"):
        RecordSet(tmp_path / "set", "set")


# --- sampler settings ------------------------------------------------------------------------------

def test_same_neutral_settings_on_both_sides_give_no_finding(tmp_path):
    assert check_sampling_settings(*_sides(*_pair(tmp_path, sampling={"engine": NEUTRAL, "trainer": NEUTRAL}))) == []


def test_different_temperatures_are_invalid(tmp_path):
    """open-instruct#1473's shape: the engine samples at 0.7, the trainer recomputes at 1."""
    sides = _sides(*_pair(tmp_path, sampling={"engine": {**NEUTRAL, "temperature": 0.7}, "trainer": NEUTRAL}))
    found = check_sampling_settings(*sides)
    assert [(f.check, f.severity, f.side) for f in found] == [("sampling", "invalid", "both")]
    assert "temperature 1 (reference) vs 0.7 (candidate)" in found[0].message
    assert "same temperature applied to the logits" in found[0].fix
    assert found[0].evidence["differ"] == {"temperature": [1.0, 0.7]}


def test_missing_settings_are_notes_naming_the_side(tmp_path):
    neither = check_sampling_settings(*_sides(*_pair(tmp_path / "a")))
    assert [(f.severity, f.side) for f in neither] == [("note", "both")]
    assert "neither side records" in neither[0].message and "sampling=" in neither[0].fix
    one = check_sampling_settings(*_sides(*_pair(tmp_path / "b", sampling={"engine": NEUTRAL})))
    assert [(f.severity, f.side) for f in one] == [("note", "reference")]
    assert "records no sampler settings" in one[0].message


@pytest.mark.parametrize("setting", [{"top_p": 0.9}, {"top_k": 50}, {"min_p": 0.05}, {"temperature": 0.6},
                                     {"temperature": 0}])
def test_tempered_or_truncated_sampler_is_flagged(tmp_path, setting):
    settings = {**NEUTRAL, **setting}
    found = check_sampling_settings(*_sides(*_pair(tmp_path, sampling={"engine": settings, "trainer": settings})))
    assert [(f.severity, f.side) for f in found] == [("note", "both")]
    assert "not the importance ratio" in found[0].message
    kind = "tempered" if "temperature" in setting else "truncated"
    assert f"a {kind} sampler" in found[0].message
    processed = check_sampling_settings(*_sides(*_pair(
        tmp_path / "p", sampling={"engine": settings, "trainer": settings},
        logprobs_mode={"engine": "processed_logprobs", "trainer": "processed_logprobs"})))
    assert "both sides declare processed log-probs" in processed[0].message


# --- sampled ids, masks and lengths ---------------------------------------------------------------

def test_aligned_rollouts_give_no_finding(tmp_path):
    trainer, engine = _pair(tmp_path)
    assert check_sampled_tokens(record_rows(trainer), record_rows(engine)) == []


def test_right_padding_beyond_the_response_is_ignored():
    ids = np.array([5, 6, 7, 8, 0, 0])
    mask = np.array([False, True, True, False, False, False])
    longer = (np.array([5, 6, 7, 8, 9, 9, 9]), np.array([False, True, True, False, False, False, False]))
    assert check_sampled_tokens({"a": (ids, mask)}, {"a": longer}) == []


def _retrained(rollouts, index: int, **changes):
    """The trainer's own view of one rollout (``trainer_response_ids``/``mask``), changed."""
    out = list(rollouts)
    r = out[index]
    view = {"trainer_response_ids": r.response_ids, "trainer_response_mask": r.response_mask, **changes}
    out[index] = dataclasses.replace(r, **view)
    return out


def test_a_shifted_recompute_is_invalid_naming_position_and_tokens(tmp_path):
    """LightRFT#53's shape: the trainer scored the response one token off."""
    rollouts = read_rollouts(DUMP)
    r = rollouts[3]
    shifted = (*r.response_ids[1:], r.response_ids[-1])
    trainer, engine = _pair(tmp_path, _retrained(rollouts, 3, trainer_response_ids=shifted))
    found = check_sampled_tokens(record_rows(trainer), record_rows(engine))
    assert [(f.check, f.severity, f.side) for f in found] == [("sampling", "invalid", "both")]
    f = found[0]
    at = len(r.prompt_ids)
    assert f.evidence["kind"] == "ids" and f.evidence["count"] == 1
    assert f.evidence["first"][0] == {"id": r.id, "position": at, "reference": shifted[0],
                                      "candidate": r.response_ids[0], "in": "response"}
    assert f"the sampled token ids differ in 1 of 64 samples: `{r.id}` (position {at} in the response" in f.message
    assert "engine's sampled token ids" in f.fix


def test_different_masks_lengths_and_missing_samples_are_invalid(tmp_path):
    rollouts = read_rollouts(DUMP)
    masked = list(rollouts[5].response_mask)
    masked[2] = False
    planted = _retrained(rollouts, 5, trainer_response_mask=tuple(masked))
    planted = _retrained(planted, 7, trainer_response_ids=rollouts[7].response_ids[:-2],
                         trainer_response_mask=rollouts[7].response_mask[:-2])
    planted[7] = dataclasses.replace(planted[7], trainer_logprobs=planted[7].trainer_logprobs[:-2])
    trainer, engine = _pair(tmp_path, planted)
    rows_t = record_rows(trainer)
    del rows_t[rollouts[9].id]
    found = {f.evidence["kind"]: f for f in check_sampled_tokens(rows_t, record_rows(engine))}
    assert set(found) == {"mask", "length", "missing"}
    assert all(f.severity == "invalid" and f.side == "both" for f in found.values())
    assert found["mask"].evidence["first"][0] == {"id": rollouts[5].id,
                                                  "position": len(rollouts[5].prompt_ids) - 1 + 2}
    end = len(rollouts[7].prompt_ids) + len(rollouts[7].response_ids) - 1
    assert found["length"].evidence["first"][0] == {"id": rollouts[7].id, "reference": end - 2, "candidate": end}
    assert f"`{rollouts[9].id}` only on the candidate" in found["missing"].message
    assert "same rollout batch" in found["length"].fix and "one response mask" in found["mask"].fix


def test_a_prompt_difference_is_named_as_such():
    mask = np.array([False, False, True, True])
    found = check_sampled_tokens({"a": (np.array([1, 2, 3, 4, 5]), mask)}, {"a": (np.array([1, 9, 3, 4, 5]), mask)})
    assert found[0].evidence["first"][0]["in"] == "prompt"


def test_trainer_columns_in_a_dump_are_read(tmp_path):
    rows = [json.loads(line) for line in DUMP.read_text().splitlines()[:3]]
    rows[0]["trainer_response_ids"] = rows[0]["response_ids"][:-1]
    rows[0]["trainer_logprobs"] = rows[0]["trainer_logprobs"][:-1]
    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = read_rollouts(dump)
    assert read[0].trainer_response_ids == tuple(rows[0]["response_ids"][:-1])
    assert read[1].trainer_response_ids is None
    rows[1]["trainer_logprobs"] = rows[1]["trainer_logprobs"][:-1]  # no trainer ids: lengths must agree
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UsageError, match=r"dump\.jsonl:2: per-response-token columns differ in length"):
        read_rollouts(dump)


def test_rows_against_the_eval_set(tmp_path):
    """One side's rows against the eval set (the engine's sample): honest → none; a longer response, other
    ids, a missing sample → invalid naming that side."""
    rollouts = read_rollouts(DUMP)
    evalset = {r.id: np.array([*r.prompt_ids, *r.response_ids]) for r in rollouts}
    trainer, _ = _pair(tmp_path / "a")
    assert check_against_evalset(record_rows(trainer), evalset, "reference", "reference") == []
    longer = list(rollouts)
    longer[1] = dataclasses.replace(longer[1], trainer_response_ids=(*longer[1].response_ids, 7),
                                    trainer_response_mask=(*longer[1].response_mask, True),
                                    trainer_logprobs=(*longer[1].trainer_logprobs, -1.0))
    swapped = list(longer[2].response_ids)
    swapped[4] = (swapped[4] + 1) % 256
    longer[2] = dataclasses.replace(longer[2], trainer_response_ids=tuple(swapped))
    rows = record_rows(_pair(tmp_path / "b", longer)[0])
    del rows[rollouts[0].id]
    found = {f.evidence["kind"]: f for f in check_against_evalset(rows, evalset, "reference", "reference (trainer)")}
    assert set(found) == {"missing", "length", "ids"}
    assert all(f.severity == "invalid" and f.side == "reference" for f in found.values())
    assert found["ids"].evidence["first"][0] == {"id": rollouts[2].id, "position": len(rollouts[2].prompt_ids) + 4,
                                                 "side": swapped[4], "eval_set": rollouts[2].response_ids[4]}
    assert found["length"].message.startswith("reference (trainer): responses run past the eval set's sample")
