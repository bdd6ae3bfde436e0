"""Slice keys: which slice every sample and every scored position belongs to (docs/statistics.md).

Keys are either per sample (``tags.NAME``, ``length``) or per scored position (``position``,
``token_frequency``, ``entropy``, ``margin``). A family of one sample-level key puts each whole
sequence into one slice — including sequences with no scored position, so an all-masked slice is
seen and reported, not dropped. A family with any position-level key splits sequences: a sequence
belongs to every slice that holds at least one of its positions.

Input problems become explicit slices and notes, never silent drops: a sample without the tag goes
to ``(missing)``; a tag with more distinct values than ``max_values`` keeps the most frequent ones
and merges the rest into ``(other)``; declared buckets that nothing falls into are kept (with zero
samples, so they come out ``inconclusive``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from promote.contract.model import SliceDef

POSITION_KEYS = ("position", "token_frequency", "entropy", "margin", "response_position")
MISSING = "(missing)"
OTHER = "(other)"


def is_position_key(key: str) -> bool:
    return key in POSITION_KEYS


def reference_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy (nats) of softmax(logits) per row, in float64; a flat distribution has log V."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    p = np.exp(log_p)
    return -(p * np.where(p > 0, log_p, 0.0)).sum(axis=-1)


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Reference top-1 minus top-2 logit per row: small margins are where argmax flips happen."""
    if logits.shape[-1] < 2:
        return np.full(logits.shape[0], np.inf)
    top = np.partition(np.asarray(logits, dtype=np.float64), -2, axis=-1)[..., -2:]
    return top[..., 1] - top[..., 0]


def token_counts(input_ids: list[tuple[int, ...]]) -> Counter:
    """How often each token id occurs in the eval set (the `token_frequency` key's reference)."""
    counts: Counter = Counter()
    for ids in input_ids:
        counts.update(ids)
    return counts


@dataclass
class Slice:
    """One slice: its label, member sequences, and a mask over the position table."""

    label: str
    family: str
    members: np.ndarray  # sample indices (sorted)
    position_mask: np.ndarray  # bool over the position table

    @property
    def samples(self) -> int:
        return int(self.members.size)

    @property
    def positions(self) -> int:
        return int(self.position_mask.sum())


@dataclass
class Family:
    """The slices of one `slices:` entry plus the notes its derivation produced."""

    name: str
    keys: tuple[str, ...]
    position_level: bool
    slices: list[Slice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(x: float) -> str:
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _edges_codes(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, list[str], list[int]]:
    """Explicit edges e0 < … < ek: codes 0 (< e0), 1..k ([e_{j-1}, e_j)), k+1 (≥ ek); declared = 1..k."""
    codes = np.searchsorted(edges, values, side="right")
    labels = [f"(-inf,{_fmt(edges[0])})"]
    labels += [f"[{_fmt(edges[j - 1])},{_fmt(edges[j])})" for j in range(1, edges.size)]
    labels.append(f"[{_fmt(edges[-1])},inf)")
    return codes, labels, list(range(1, edges.size))


def _quantile_codes(values: np.ndarray, q: int, key: str, notes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Equal-count buckets from the observed values; tied edges merge buckets (and say so)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), []
    edges = np.unique(np.quantile(values, np.linspace(0, 1, q + 1)))
    if edges.size - 1 < q:
        notes.append(f"`{key}`: asked for {q} quantile buckets, ties leave {max(edges.size - 1, 1)}")
    if edges.size == 1:
        return np.zeros(values.size, dtype=np.int64), [f"[{_fmt(edges[0])},{_fmt(edges[0])}]"]
    codes = np.searchsorted(edges[1:-1], values, side="right")
    labels = [f"[{_fmt(edges[j])},{_fmt(edges[j + 1])})" for j in range(edges.size - 2)]
    labels.append(f"[{_fmt(edges[-2])},{_fmt(edges[-1])}]")
    return codes, labels


def _tag_codes(tags: list[str | None], key: str, cap: int, notes: list[str]) -> tuple[np.ndarray, list[str]]:
    missing = sum(t is None for t in tags)
    if missing:
        notes.append(f"`{key}` is missing on {missing} of {len(tags)} samples; they form the `{MISSING}` slice")
    counts = Counter(t for t in tags if t is not None)
    values = sorted(counts)
    if len(values) > cap:
        kept = sorted(sorted(counts, key=lambda v: (-counts[v], v))[: cap - 1])
        merged = len(values) - len(kept)
        in_other = sum(counts[v] for v in values if v not in set(kept))
        notes.append(f"`{key}` has {len(values)} distinct values, more than max_values {cap}: kept the "
                     f"{len(kept)} most frequent, merged {merged} values ({in_other} samples) into `{OTHER}`")
        values = [*kept, OTHER]
    index = {v: i for i, v in enumerate(values)}
    labels = [*values, MISSING]
    other = index.get(OTHER)
    codes = np.array([len(values) if t is None else index.get(t, other) for t in tags], dtype=np.int64)
    return codes, labels


def _key_name(key: str) -> str:
    return key.split(".", 1)[1] if key.startswith("tags.") else key


@dataclass
class KeyInputs:
    """What key derivation reads: per-sample tags and lengths, per-position key values."""

    tags: list[dict[str, str]]
    lengths: np.ndarray
    seq: np.ndarray  # position → sample index
    position_values: dict[str, np.ndarray]  # position-level key → values
    response_lengths: np.ndarray | None = None  # scored positions per sample (`response_length`)


def _codes_for(key: str, sdef: SliceDef, inputs: KeyInputs, notes: list[str]):  # noqa: ANN202
    """(codes, labels, declared, level) for one key; codes per sample or per position."""
    declared: list[int] = []
    if key.startswith("tags."):
        name = _key_name(key)
        codes, labels = _tag_codes([t.get(name) for t in inputs.tags], key, sdef.max_values, notes)
        return codes, labels, declared, "sample"
    level = "position" if is_position_key(key) else "sample"
    if level == "position":
        values = inputs.position_values[key]
    elif key == "response_length":
        values = np.bincount(inputs.seq, minlength=inputs.lengths.size).astype(np.float64) \
            if inputs.response_lengths is None else inputs.response_lengths.astype(np.float64)
    else:
        values = inputs.lengths.astype(np.float64)
    if sdef.buckets is not None:
        codes, labels, declared = _edges_codes(values, np.asarray(sdef.buckets, dtype=np.float64))
    else:
        codes, labels = _quantile_codes(values, sdef.quantiles or 4, key, notes)
    return codes, labels, declared, level


def derive(sdef: SliceDef, inputs: KeyInputs) -> Family:
    """Split the eval set along one slice definition (single or crossed keys)."""
    n_positions = inputs.seq.size
    family = Family(sdef.name, sdef.keys, any(is_position_key(k) for k in sdef.keys))
    parts = [_codes_for(k, sdef, inputs, family.notes) for k in sdef.keys]
    if family.position_level:
        rows = [c if level == "position" else c[inputs.seq] for c, _, _, level in parts]
        masked = int((inputs.lengths <= 1).sum())
        if masked:
            family.notes.append(f"{masked} samples have no scored position and cannot fall in any "
                                f"position-level slice of `{sdef.name}`")
    else:
        rows = [c for c, _, _, _ in parts]
    stacked = np.stack(rows, axis=1) if rows and rows[0].size else np.zeros((0, len(parts)), dtype=np.int64)
    combos = [tuple(r) for r in np.unique(stacked, axis=0)] if stacked.size else []
    if len(parts) == 1 and parts[0][2]:  # a single key with declared edges keeps its empty buckets
        combos = sorted(set(combos) | {(d,) for d in parts[0][2]})
    for combo in combos:
        member = np.all(stacked == np.asarray(combo), axis=1) if stacked.size else np.zeros(0, dtype=bool)
        text = ",".join(f"{_key_name(k)}={p[1][c]}" for k, p, c in zip(sdef.keys, parts, combo, strict=True))
        label = f"{sdef.name}={parts[0][1][combo[0]]}" if len(parts) == 1 else f"{sdef.name}:{text}"
        if family.position_level:
            mask = member
            members = np.unique(inputs.seq[mask])
        else:
            members = np.nonzero(member)[0]
            mask = np.isin(inputs.seq, members) if n_positions else np.zeros(0, dtype=bool)
        family.slices.append(Slice(label, sdef.name, members, mask))
    empty = [s.label for s in family.slices if s.samples == 0]
    if empty:
        family.notes.append(f"declared buckets with no samples: {', '.join(empty)} (reported as inconclusive)")
    return family
