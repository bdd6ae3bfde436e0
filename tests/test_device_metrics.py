"""The torch path of the metrics (metrics/device.py, engine/device_scoring.py) equals the numba path.

Torch logits are scored where they are: on CUDA by torch ops, on CPU by the numba kernel one chunk at a
time. The torch ops are held to numba here on CPU torch (``CPU_BACKEND = "torch"``): 1e-6 relative on
every metric, exact on counts, argmaxes and flags, through non-finite logits, vocabulary masks, ties,
padded rows, a bf16 side, tiny chunks and the parameterised metrics. The CUDA test runs the same
comparison on a GPU (skipped without one). Out of memory in a chunk is exit 3 naming the chunk.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from promote.cli import cli
from promote.data import Sample, batches
from promote.engine import device_scoring
from promote.engine.accumulate import NumericsAccumulator
from promote.engine.scoring import score_outputs
from promote.errors import EvaluationError
from promote.kernels.base import Outputs
from promote.metrics import device
from promote.metrics.distribution import COLUMNS, token_metrics, topk_overlap
from promote.stages.slices.keys import reference_entropy, top2_margin

EXACT = ("argmax_agree", "nonfinite", "tie_flip", "ref_argmax", "degenerate", "cand_argmax")


@pytest.fixture(params=["torch", "numba"])
def backend(request, monkeypatch):
    """Both CPU backends of the torch path: the torch ops (what CUDA runs) and numba on chunks."""
    monkeypatch.setattr(device_scoring, "CPU_BACKEND", request.param)
    return request.param


def _assert_same(got: dict, want: dict, names=None) -> None:
    for name in names or want:
        g, w = np.asarray(got[name], dtype=np.float64), np.asarray(want[name], dtype=np.float64)
        if name in EXACT:
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=0, equal_nan=True, err_msg=name)


def _hard_rows(rng: np.random.Generator, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """[P, V] float32 pairs: noise of several sizes, ties, identical rows, masks, NaN/±inf, large shifts."""
    ref = (rng.standard_normal((40, vocab)) * 3).astype(np.float32)
    cand = ref + (rng.standard_normal((40, vocab)) * np.logspace(-7, 0.5, 40)[:, None]).astype(np.float32)
    cand[0] = ref[0]  # identical: KL 0 exactly
    ref[1, :3] = ref[1].max() + 1  # a three-way tie at the top: first index wins
    cand[1] = ref[1]
    cand[1, 2] += 1e-4  # … and a flip at a near tie
    ref[2, 10:20] = cand[2, 10:20] = -np.inf  # a vocabulary mask on both sides (not non-finite)
    ref[3, 5] = np.nan  # non-finite on one side
    cand[4, 7] = np.inf
    cand[5, 9] = -np.inf  # −inf on one side only is non-finite
    ref[6] = np.nan  # a whole NaN row
    ref[7] = cand[7] = 0.0  # constant on both sides: degenerate
    ref[8] += 1000.0  # a large common shift
    cand[8] = ref[8] + 1e-3
    ref[9, :] = ref[9, 0]  # constant reference, candidate not
    cand[10] = ref[10] * 0.5  # a temperature change: large |u|
    cand[11] = ref[11] + 40 * rng.standard_normal(vocab).astype(np.float32)  # |u| beyond the series
    return ref, cand


def test_torch_ops_equal_numba_on_every_column():
    rng = np.random.default_rng(0)
    ref, cand = _hard_rows(rng, 257)
    targets = rng.integers(0, 257, len(ref))
    targets[2] = 12  # a masked target
    want = token_metrics(ref, cand, targets, tie_margin=1e-3)
    got = device.token_columns(torch.from_numpy(ref), torch.from_numpy(cand), torch.from_numpy(targets), 1e-3)
    from promote.metrics.distribution import columns_to_values

    values = columns_to_values(got.numpy())
    assert set(values) == set(want)
    _assert_same(values, want)
    # the cases did happen: counts, ties, masks and degenerate rows, not just noise
    assert want["nonfinite"][3:7].min() >= 1 and want["nonfinite"][2] == 0
    assert want["kl"][0] == 0 and want["tie_flip"][1] == 1 and want["ref_argmax"][1] == 0
    assert want["degenerate"][7] == 1 and want["degenerate"][9] == 0 and np.isnan(want["kl"][6])


def test_bf16_candidate_equals_numba_on_its_float32_values():
    rng = np.random.default_rng(1)
    ref = torch.from_numpy((rng.standard_normal((33, 1000)) * 4).astype(np.float32))
    cand = (ref + 0.01 * torch.from_numpy(rng.standard_normal((33, 1000)).astype(np.float32))).to(torch.bfloat16)
    targets = rng.integers(0, 1000, 33)
    want = token_metrics(ref.numpy(), cand.float().numpy(), targets)
    from promote.metrics.distribution import columns_to_values

    got = columns_to_values(device.token_columns(ref, cand, torch.from_numpy(targets), 1e-3).numpy())
    _assert_same(got, want)


@pytest.mark.parametrize("k", [1, 3, 5, 64, 300])
def test_topk_overlap_equal_with_ties_and_nan(k):
    rng = np.random.default_rng(2)
    ref = rng.integers(-3, 3, (30, 64)).astype(np.float32)  # many ties everywhere
    cand = ref.copy()
    cand[::2] += rng.integers(-1, 2, cand[::2].shape)
    ref[3, :5] = np.nan
    cand[4, :] = -np.inf
    want = topk_overlap(ref, cand, k)
    got = device.topk_overlap(torch.from_numpy(ref), torch.from_numpy(cand), k).numpy()
    np.testing.assert_array_equal(got, want)
    if k < 64:  # ties decide the sets: the lowest indices among equal logits
        assert not np.all(want == 1.0)
    z = np.array([[2.0, 2.0, 2.0, 0.0, 1.0]])
    assert topk_overlap(z, z[:, ::-1].copy(), 2)[0] == 0.0  # top-2 {0, 1} vs, reversed, {2, 3}: none shared


def test_slice_keys_equal():
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((20, 300)) * 5).astype(np.float32)
    z[0, :10] = -np.inf
    np.testing.assert_allclose(device.reference_entropy(torch.from_numpy(z)).numpy(), reference_entropy(z),
                               rtol=1e-12)
    np.testing.assert_array_equal(device.top2_margin(torch.from_numpy(z)).numpy(), top2_margin(z))


def _padded_batch(rng: np.random.Generator, vocab: int):
    lengths = [1, 2, 17, 40, 3, 40, 25]  # a 1-token sample scores nothing; padding beyond each length
    samples = tuple(Sample(id=f"s{i}", input_ids=tuple(int(t) for t in rng.integers(0, vocab, n)), tags={}, line=i + 1)
                    for i, n in enumerate(lengths))
    return next(batches(samples, len(samples)))


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_scored_batches_and_summaries_equal(backend, chunk):
    """A padded batch scored from torch tensors (fp32 reference, bf16 candidate) equals the numpy path:
    every per-position value (RL metrics included), and a numerics accumulator's whole state."""
    rng = np.random.default_rng(4)
    batch = _padded_batch(rng, 97)
    shape = (*batch.input_ids.shape, 97)
    ref = torch.from_numpy((rng.standard_normal(shape) * 3).astype(np.float32))
    cand = (ref + 0.05 * torch.from_numpy(rng.standard_normal(shape).astype(np.float32))).to(torch.bfloat16)
    ref[3, 5, 2] = float("nan")
    ref[2, 4, :3] = float(ref[2, 4].max()) + 1  # a tie at the top
    cand[5, 6, :] = 1.0  # a constant candidate row
    host = score_outputs(batch, Outputs(logits=ref.numpy()), Outputs(logits=cand.float().numpy()), tie_margin=1e-3)
    dev = score_outputs(batch, Outputs(logits=ref, chunk=chunk), Outputs(logits=cand, chunk=chunk), tie_margin=1e-3)
    assert dev.gathered_ref is None and dev.device is not None and host.device is None and host.host is not None
    np.testing.assert_array_equal(dev.rows, host.rows)
    assert set(dev.values) == set(host.values) and "k3" in dev.values
    assert dev.rows.size == sum([0, 1, 16, 39, 2, 39, 24])
    _assert_same(dev.values, host.values)
    np.testing.assert_array_equal(dev.topk_overlap(5), host.topk_overlap(5))
    assert dev.degenerate_positions() == host.degenerate_positions() and dev.ref_abs_max() == host.ref_abs_max()
    assert dev.gathered_ref is None  # nothing above copied the batch off its device
    # A consumer that reads the rows (a plug-in) gets them on the host, as float32, whatever the kernel gave.
    np.testing.assert_array_equal(dev.ref_logits, host.ref_logits)
    np.testing.assert_array_equal(dev.cand_logits, cand.float().numpy()[dev.rows, dev.cols])
    keys = ("kl", "tv", "argmax_agree", "nonfinite", "entropy_ratio", "topk_overlap@5", "ratio_outside@2", "k3",
            "pg_bias@1", "seq_log_ratio", "seq_masked@2")
    summaries = []
    for scored in (host, dev):
        acc = NumericsAccumulator(("kl", "tv", "argmax_agree", "nonfinite", "entropy_ratio"), parameterized=keys[5:])
        acc.update(scored)
        summaries.append(acc)
    a, b = (s.state_dict() for s in summaries)
    assert a["positions"] == b["positions"] and a["degenerate_positions"] == b["degenerate_positions"]
    assert a["tie_flips"] == b["tie_flips"] and a["ref_abs_max"] == b["ref_abs_max"]
    for key in keys:
        sa, sb = summaries[0].summaries[key], summaries[1].summaries[key]
        assert sa.count == sb.count, key
        for stat in ("mean", "max", "p99"):
            np.testing.assert_allclose(sb.stat(stat), sa.stat(stat), rtol=1e-6, err_msg=f"{key} {stat}")
        assert [(w.sample_id, w.position) for w in sb.worst] == [(w.sample_id, w.position) for w in sa.worst], key


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_cpu_tensors_are_read_in_place_chunk_by_chunk(monkeypatch, half):
    """On CPU, numba reads the kernels' own tensors (fp32, and bf16/fp16 as their bits): no copy of the logits
    is made, each call covers at most `chunk` positions (the smaller chunk of the two kernels), and every chunk
    of the batch reuses one allocation of the kernel's scratch rows (per-row allocations page-faulted at
    V ≥ 128k)."""
    seen, scratches = [], []
    real = device_scoring.fused_columns

    def spy(ref, cand, targets, tie_margin, out, index=None, scratch=None):
        seen.append((len(index), np.shares_memory(ref, ref_t.numpy()),
                     np.shares_memory(cand, cand_t.view(torch.int16).numpy())))
        scratches.append(scratch)
        return real(ref, cand, targets, tie_margin, out, index=index, scratch=scratch)

    monkeypatch.setattr(device_scoring, "fused_columns", spy)
    rng = np.random.default_rng(5)
    batch = _padded_batch(rng, 50)
    ref_t = torch.from_numpy(rng.standard_normal((*batch.input_ids.shape, 50)).astype(np.float32))
    cand_t = ref_t.to(half)
    score_outputs(batch, Outputs(logits=ref_t, chunk=16), Outputs(logits=cand_t, chunk=32), tie_margin=1e-3)
    assert max(n for n, _, _ in seen) == 16 and sum(n for n, _, _ in seen) == 121  # every scored position once
    assert all(r and c for _, r, c in seen)
    assert len(seen) > 1 and all(s is scratches[0] for s in scratches) and scratches[0].shape[1:] == (2, 50)


def test_a_chunk_of_non_finite_logits_is_counted_never_dropped(backend):
    """Every position of a chunk whose candidate logits are NaN/inf is scored: NaN metrics, `nonfinite` counts
    each bad logit, and the summaries count the positions (a clause on them fails)."""
    rng = np.random.default_rng(8)
    batch = _padded_batch(rng, 40)
    ref = torch.from_numpy(rng.standard_normal((*batch.input_ids.shape, 40)).astype(np.float32))
    cand = ref.clone()
    cand[3, :8] = float("nan")  # sample s3 (40 tokens): its first 8 positions = the first chunk of 8 in that row
    cand[3, 8:16, :5] = float("inf")
    scored = score_outputs(batch, Outputs(logits=ref, chunk=8), Outputs(logits=cand, chunk=8), tie_margin=1e-3)
    row3 = scored.rows == 3
    bad = scored.values["nonfinite"][row3]
    assert list(bad[:8]) == [40.0] * 8 and list(bad[8:16]) == [5.0] * 8 and bad[16:].sum() == 0
    assert np.isnan(scored.values["kl"][row3][:16]).all() and not np.isnan(scored.values["kl"][row3][16:]).any()
    acc = NumericsAccumulator(("kl", "nonfinite"))
    acc.update(scored)
    assert acc.positions == scored.rows.size == 121 and acc.summaries["kl"].count == 121
    assert acc.summaries["nonfinite"].stat("max") == 40 and np.isnan(acc.summaries["kl"].stat("max"))


def test_out_of_memory_in_a_chunk_is_an_evaluation_error():
    """A real allocation failure (a [64, 10^10] gather cannot fit) names the chunk and how to lower it."""
    vocab = 10**10
    rng = np.random.default_rng(6)
    batch = _padded_batch(rng, 50)
    huge = torch.zeros(1, 1, 1).expand(*batch.input_ids.shape, vocab)  # no memory until gathered
    with pytest.raises(EvaluationError) as caught:
        score_outputs(batch, Outputs(logits=huge, chunk=64), Outputs(logits=huge, chunk=64), tie_margin=1e-3)
    text = str(caught.value)
    assert "out of host memory" in text and "64 positions" in text and "`chunk`" in text and "batch_size" in text


def test_check_out_of_memory_is_exit_3_naming_what_to_lower(tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch

        class Huge(torch.nn.Module):
            def forward(self, ids):
                return torch.zeros(1, 1, 1).expand(*ids.shape, 10**10)  # V = 10^10, nothing allocated yet

        def build():
            return Huge()
    """))
    (tmp_path / "eval.jsonl").write_text("".join(f'{{"id": "s{i}", "input_ids": [1, 2, 3, 4]}}\n' for i in range(4)))
    (tmp_path / "contract.yaml").write_text(textwrap.dedent("""
        version: 1
        name: oom
        reference: {kind: torch, model: model.py:build, batch_size: 4, chunk: 8}
        candidate: {kind: torch, model: model.py:build, batch_size: 4}
        data: {path: eval.jsonl, task: causal-lm}
        numerical:
          clauses:
            - {id: kl, metric: kl, stat: max, max: 1}
    """))
    result = CliRunner().invoke(cli, ["check", str(tmp_path / "contract.yaml"), "--no-progress"])
    # The identity check reads the first batch before it is scored (issue 23): at V = 10^10 even its probe
    # rows do not fit, and that is exit 3 saying so; the chunk's own message is held by the test above.
    assert result.exit_code == 3, result.output
    assert "ran out of memory reading the first batch's outputs (10000000000 ids per position)" in result.output
    assert "lower `batch_size`" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_forward_out_of_memory_is_exit_3_naming_batch_size(tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch

        class Greedy(torch.nn.Module):
            def forward(self, ids):
                return torch.empty(ids.shape[0], 10**7, 10**7)  # 400 TB: the allocator refuses it

        def build():
            return Greedy()
    """))
    (tmp_path / "eval.jsonl").write_text("".join(f'{{"id": "s{i}", "input_ids": [1, 2, 3]}}\n' for i in range(2)))
    (tmp_path / "contract.yaml").write_text(textwrap.dedent("""
        version: 1
        name: oom-forward
        reference: {kind: torch, model: model.py:build, batch_size: 2}
        candidate: {kind: torch, model: model.py:build, batch_size: 2}
        data: {path: eval.jsonl, task: causal-lm}
        numerical: {clauses: [{id: kl, metric: kl, stat: max, max: 1}]}
    """))
    result = CliRunner().invoke(cli, ["check", str(tmp_path / "contract.yaml"), "--no-progress"])
    assert result.exit_code == 3, result.output
    assert "out of cpu memory in the forward pass of a batch of 2 sequences" in result.output
    assert "`batch_size` (now 2)" in result.output and "Traceback" not in result.output


def test_chunk_key_is_validated(tmp_path):
    (tmp_path / "contract.yaml").write_text(textwrap.dedent("""
        version: 1
        name: bad-chunk
        reference: {kind: torch, model: model.py:build, chunk: 0}
        candidate: {kind: torch, model: model.py:build}
        data: {path: eval.jsonl, task: causal-lm}
        numerical: {clauses: [{id: kl, metric: kl, stat: max, max: 1}]}
    """))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "contract.yaml")])
    assert result.exit_code == 2 and "chunk" in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU tests run the same torch ops)")
def test_cuda_equals_numba(monkeypatch):
    rng = np.random.default_rng(7)
    batch = _padded_batch(rng, 32000)
    shape = (*batch.input_ids.shape, 32000)
    ref = torch.from_numpy((rng.standard_normal(shape) * 3).astype(np.float32))
    cand = (ref + 0.02 * torch.from_numpy(rng.standard_normal(shape).astype(np.float32))).to(torch.bfloat16)
    ref[3, 5, 2] = float("nan")
    host = score_outputs(batch, Outputs(logits=ref.numpy()), Outputs(logits=cand.float().numpy()), tie_margin=1e-3)
    dev = score_outputs(batch, Outputs(logits=ref.cuda(), chunk=5), Outputs(logits=cand.cuda()), tie_margin=1e-3)
    assert dev.device.device.type == "cuda"
    _assert_same(dev.values, host.values)
    np.testing.assert_array_equal(dev.topk_overlap(5), host.topk_overlap(5))
    assert list(COLUMNS)[:3] == ["kl", "kl_rev", "tv"]


def test_numpy_logits_are_scored_in_place_and_gathered_only_when_a_consumer_asks():
    """Numpy pairs (ONNX, served, vLLM kernels): the kernel reads the batch where it is (the old path copied it
    at the scored positions first); a per-position consumer gets the gathered rows, once, with the values the
    gathered path gave."""
    rng = np.random.default_rng(12)
    batch = _padded_batch(rng, 61)
    ref = (rng.standard_normal((*batch.input_ids.shape, 61)) * 3).astype(np.float32)
    cand = (ref + rng.standard_normal(ref.shape) * 0.1).astype(np.float32)
    scored = score_outputs(batch, Outputs(logits=ref), Outputs(logits=cand), tie_margin=1e-3)
    assert scored.gathered_ref is None and scored.host is not None and scored.host[0] is ref  # not gathered
    gathered = ref[scored.rows, scored.cols], cand[scored.rows, scored.cols]
    want = token_metrics(*gathered, scored.targets, tie_margin=1e-3)
    for name, values in want.items():
        np.testing.assert_array_equal(scored.values[name], values, err_msg=name)
    np.testing.assert_array_equal(scored.topk_overlap(3), topk_overlap(*gathered, 3))
    assert scored.host is None and np.array_equal(scored.gathered_cand, gathered[1])  # gathered once, on demand
    assert scored.cand_logits is scored.gathered_cand and np.array_equal(scored.ref_logits, gathered[0])
    assert scored.per_position(reference_entropy, device.reference_entropy).shape == scored.rows.shape


def test_scoring_numpy_logits_does_not_import_torch():
    """ONNX-, HTTP- and vLLM-only checks never needed torch to score: importing it costs seconds a check."""
    import subprocess
    import sys

    script = ("import sys\n"
              "import numpy as np\n"
              "from promote.data import Sample, batches\n"
              "from promote.engine.scoring import score_outputs\n"
              "from promote.kernels.base import Outputs\n"
              "batch = next(batches((Sample(id='a', input_ids=(1, 2, 3, 4), tags={}, line=1),), 1))\n"
              "z = np.random.default_rng(0).standard_normal((1, 4, 9)).astype(np.float32)\n"
              "scored = score_outputs(batch, Outputs(logits=z), Outputs(logits=z + 0.1), tie_margin=1e-3)\n"
              "assert scored.values['kl'].shape == (3,)\n"
              "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
