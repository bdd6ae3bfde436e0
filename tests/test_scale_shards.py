"""`promote check --shard I/N --partial OUT` and `promote merge`: the merged report is the
single-process report (exact statistics bit for bit, slices with their bootstrap intervals, the
noise floor, localize), whatever the order of the files; missing, duplicated, foreign or tampered
partials are errors naming them (exit 2), a crashed shard makes the merged report exit 3."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from scale_support import comparable, example_variant

from promote.cli import cli
from promote.errors import UsageError
from promote.run import CheckOptions, run_check, run_merge, write_shard
from promote.scale.partial import MAGIC, Partial
from promote.scale.split import parse_shard, shard_bounds

ONLY_PASS = CheckOptions(stages=("numerics", "slices"))


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    """The slices example (numerics + slices) with a noise floor and localize, on 96 samples (3 batches)."""
    tmp = tmp_path_factory.mktemp("sliced")
    path = example_variant(tmp, "slices.yaml", limit=96, localize=True)
    doc = yaml.safe_load(path.read_text())
    doc["numerical"]["noise_floor"] = {"perturb": ["rerun", "odd_batch"], "odd_batch_size": 3}
    assert doc["statistical"]["resamples"] == 2000
    doc["statistical"]["resamples"] = 400  # bootstraps cost CPU; equality does not need more
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    single = run_check(str(path), ONLY_PASS)
    partials = [tmp / f"part{i}" for i in range(3)]
    for i, out in enumerate(partials):
        assert write_shard(str(path), i, 3, out, ONLY_PASS) == 0
    return path, single, partials


def _without_localize_time(data: dict) -> dict:
    for stage in data["stages"]:
        (stage.get("details", {}).get("localize") or {}).pop("seconds", None)
    return data


def test_the_split_is_contiguous_whole_batches_and_covers_every_sample_once():
    for total, size, count in [(96, 32, 3), (320, 32, 7), (24, 5, 7), (0, 4, 2), (10, 32, 3)]:
        ranges = [shard_bounds(total, size, i, count) for i in range(count)]
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(start % size == 0 for start, _ in ranges)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(UsageError, match="expected I/N"):
            parse_shard(bad)


def test_merged_partials_equal_the_single_process_report_in_any_order(sliced):
    path, single, partials = sliced
    expected = _without_localize_time(comparable(single))
    stages = {s["name"]: s for s in expected["stages"]}
    assert stages["slices"]["clauses"] and stages["numerics"]["details"]["noise_floor"]["perturbations"] == \
        ["rerun", "odd_batch"] and "localize" in stages["numerics"]["details"]
    assert any(c.get("evidence", {}).get("ci") or c.get("evidence", {}).get("slices")
               for c in stages["slices"]["clauses"])  # bootstrap intervals are part of what must match
    for order in ((0, 1, 2), (2, 0, 1)):
        merged = run_merge([partials[i] for i in order])
        assert _without_localize_time(comparable(merged)) == expected, order
        assert merged.exit_code == single.exit_code


def test_partial_files_are_versioned_and_self_describing(sliced):
    path, _, partials = sliced
    data = partials[1].read_bytes()
    assert data.startswith(MAGIC) and b"pickle" not in data
    partial = Partial.from_bytes(data, "p1")
    assert partial.shard == {"index": 1, "count": 3, "batch_size": 32}
    assert len(partial.sample_ids) == 32 and partial.evalset["samples"] == 96
    assert partial.kernels["reference"]["kind"] == "torch" and len(partial.contract["sha256"]) == 64
    assert {stage: set(states) for stage, states in partial.states.items()} == {
        "numerics": {"summaries", "floor/rerun", "floor/odd_batch"}, "slices": {"collector"}}
    first = Partial.from_bytes(partials[0].read_bytes(), "p0")
    assert "localize" not in partial.extras["numerics"] and "localize" in first.extras["numerics"]  # shard 0's
    assert partial.extras["numerics"]["floor_key"] == first.extras["numerics"]["floor_key"]
    with pytest.raises(UsageError, match="format version 99"):
        Partial.from_bytes(data.replace(b'"version":2', b'"version":99', 1), "p1")
    with pytest.raises(UsageError, match="p1: not a promote partial"):
        Partial.from_bytes(b"PROMOTE-STATE\n{}", "p1")


def test_missing_duplicated_and_foreign_partials_are_named(sliced, tmp_path):
    path, _, partials = sliced
    runner = CliRunner()
    out = runner.invoke(cli, ["merge", str(partials[0]), str(partials[2])])
    assert out.exit_code == 2 and "shard 1/3 missing" in out.output and "2 of 3" in out.output
    out = runner.invoke(cli, ["merge", str(partials[0]), str(partials[1]), str(partials[1]), str(partials[2])])
    assert out.exit_code == 2 and "shard 1/3 given twice" in out.output and str(partials[1]) in out.output
    other = example_variant(tmp_path, "slices.yaml", limit=96, name="other.yaml")
    other.write_text(other.read_text().replace("min_samples: 20", "min_samples: 21"))
    foreign = tmp_path / "foreign"
    assert write_shard(str(other), 1, 3, foreign, CheckOptions(stages=("numerics",))) == 0
    out = runner.invoke(cli, ["merge", str(partials[0]), str(foreign), str(partials[2])])
    assert out.exit_code == 2 and "different contracts" in out.output and str(foreign) in out.output
    assert "Traceback" not in out.output


def test_a_tampered_shard_or_a_changed_contract_is_refused(sliced, tmp_path):
    path, _, partials = sliced
    partial = Partial.read(partials[1])
    partial.sample_ids = partial.sample_ids[:-1]
    tampered = tmp_path / "tampered"
    tampered.write_bytes(partial.to_bytes())
    with pytest.raises(UsageError, match="other samples than the split gives"):
        run_merge([partials[0], tampered, partials[2]])
    changed = tmp_path / "changed.yaml"
    changed.write_text(path.read_text().replace("resamples: 400", "resamples: 399"))
    with pytest.raises(UsageError, match="not the one the shards ran"):
        run_merge(partials, contract=str(changed))


def test_merge_cli_keeps_the_gate_and_its_exit_code(mini, tmp_path):
    """A failing candidate (gate exit 1) merged from 7 shards of 5 batches (two empty shards)."""
    contract = mini.contract(candidate="build_hot", numerical={"noise_floor": {"perturb": ["batch_size"]}})
    runner = CliRunner()
    single = runner.invoke(cli, ["check", str(contract), "--format", "json"])
    assert single.exit_code == 1
    outs = [tmp_path / f"s{i}.partial" for i in range(7)]
    for i, out in enumerate(outs):
        res = runner.invoke(cli, ["check", str(contract), "--shard", f"{i}/7", "--partial", str(out)])
        assert res.exit_code == 0, res.output
    merged = runner.invoke(cli, ["merge", *map(str, reversed(outs)), "--format", "json",
                                 "--output", f"json={tmp_path / 'm.json'}"])
    assert merged.exit_code == 1
    assert Partial.read(outs[6]).sample_ids == [] or Partial.read(outs[0]).sample_ids == []
    report = run_merge(outs)
    assert comparable(report) == comparable(run_check(str(contract)))


def test_a_crashed_shard_makes_the_merged_report_exit_3(mini, tmp_path):
    contract = mini.contract(candidate="build_broken")
    outs = [tmp_path / f"s{i}" for i in range(2)]
    assert [write_shard(str(contract), i, 2, out) for i, out in enumerate(outs)] == [3, 3]
    report = run_merge(outs)
    assert report.exit_code == 3
    numerics = report.stages[0]
    assert numerics.status == "error" and "factory exploded" in numerics.clauses[0].message


def test_shard_flags_are_checked(mini, tmp_path):
    contract = str(mini.contract())
    runner = CliRunner()
    for args, needle in ((["--shard", "0/2"], "go together"), (["--shard", "2/2", "--partial", "x"], "expected I/N"),
                         (["--shard", "0/2", "--partial", "x", "--engine", "ray"], "drop --engine")):
        res = runner.invoke(cli, ["check", contract, *args])
        assert res.exit_code == 2 and needle in res.output, res.output
    res = runner.invoke(cli, ["merge", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "cannot read the partial file" in res.output


def test_a_tensor_task_sharded_and_merged_equals_one_process(tmp_path):
    """`data.task: tensor` goes through the same offline loop: 64 samples in 4 batches of 16, cut into 3
    shards of whole batches, merged in any order, give the single-process report."""
    tensor = Path(__file__).resolve().parents[1] / "examples" / "tiny_mlp" / "contract.yaml"
    single = run_check(str(tensor))
    outs = [tmp_path / f"t{i}" for i in range(3)]
    assert [write_shard(str(tensor), i, 3, out) for i, out in enumerate(outs)] == [0, 0, 0]
    sizes = [len(Partial.read(out).sample_ids) for out in outs]
    assert sizes == [16, 16, 32] and sum(sizes) == 64
    for order in (outs, outs[::-1]):
        merged = run_merge(order)
        assert comparable(merged) == comparable(single)
    numerics = single.stages[0]
    assert numerics.details["task"] == "tensor" and numerics.details["samples"] == 64
    assert {c.slice for c in numerics.clauses} >= {"output=scores", "output=embedding"}


def test_the_noise_floor_cache_works_sharded_like_in_one_process(tmp_path):
    """A floor measured over shards is stored once merged; a cached floor is loaded by shard 0 only
    (the other shards skip measuring it), and either way the merged report is the single-process one."""
    from promote.stages.numerics import floor_cache

    path = example_variant(tmp_path, limit=64)
    doc = yaml.safe_load(path.read_text())
    doc["numerical"]["noise_floor"] = {"perturb": ["odd_batch"], "cache": str(tmp_path / "floors")}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    floor_cache._MEMORY.clear()
    outs = [tmp_path / f"f{i}" for i in range(2)]
    assert [write_shard(str(path), i, 2, out, ONLY_PASS) for i, out in enumerate(outs)] == [0, 0]
    assert all(Partial.read(out).loaded["numerics"] == [] for out in outs)  # nothing cached yet: measured
    measured = run_merge(outs)
    assert measured.stages[0].details["noise_floor"]["cached"] is False
    assert len(list((tmp_path / "floors").glob("*.json"))) == 1  # the merged floor was stored
    floor_cache._MEMORY.clear()  # another process: only the directory remains
    single = run_check(str(path), ONLY_PASS)
    assert single.stages[0].details["noise_floor"]["cached"] is True
    floor_cache._MEMORY.clear()
    assert [write_shard(str(path), i, 2, out, ONLY_PASS) for i, out in enumerate(outs)] == [0, 0]
    assert [Partial.read(out).loaded["numerics"] for out in outs] == [["floor/odd_batch"]] * 2
    cached = run_merge(outs[::-1])
    assert cached.stages[0].details["noise_floor"]["cached"] is True
    assert comparable(cached) == comparable(single) == comparable(measured)


def test_a_forged_floor_key_in_a_partial_never_names_a_file(tmp_path):
    """The floor key travels in the partial (shard 0 computes it from its kernels); merge stores a
    measured floor under it only when it is a sha256 name, never a path a forged partial chose."""
    from promote.stages.numerics import floor_cache

    path = example_variant(tmp_path, limit=32)
    doc = yaml.safe_load(path.read_text())
    cache = tmp_path / "floors"
    doc["numerical"]["noise_floor"] = {"perturb": ["rerun"], "cache": str(cache)}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    floor_cache._MEMORY.clear()
    outs = [tmp_path / f"k{i}" for i in range(2)]
    assert [write_shard(str(path), i, 2, out, ONLY_PASS) for i, out in enumerate(outs)] == [0, 0]
    for out in outs:
        partial = Partial.read(out)
        partial.extras["numerics"]["floor_key"] = "../escaped"
        out.write_bytes(partial.to_bytes())
    report = run_merge(outs)
    assert report.stages[0].details["noise_floor"]["cached"] is False
    assert not (tmp_path / "escaped.json").exists() and not list(cache.glob("*.json"))
