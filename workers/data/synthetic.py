"""Synthetic recall tasks, generated on the fly from a `torch.Generator` (no files, no downloads).

    task = make_task("mqar", num_kv_pairs=16, seq_len=256)
    train, evaluation = task.split(seed=0)
    x, y = train.batch(64)                      # int64 [B, T] each; y is -100 except where scored
    acc = accuracy(model(x).logits, y)          # share of scored positions where argmax == target

A model reads `inputs` causally and is scored where `targets` is not -100 (`IGNORE_INDEX`): the logits at
position t are compared with `targets[:, t]`. Token ids lie in `[0, task.vocab_size)`.

| name | defaults | published in |
|---|---|---|
| `mqar` | vocab 8192, seq_len 64, 4 pairs, power_a 0.01, random filler | Zoology `zoology/data/associative_recall.py` |
| `in_context_recall` | vocab 16, seq_len 128 | MAD `configs/tasks/in-context-recall.yml` |
| `fuzzy_in_context_recall` | vocab 16, seq_len 128, motifs of 1-3 | MAD `…/fuzzy-in-context-recall.yml` |
| `noisy_in_context_recall` | vocab 32, seq_len 128, 20 % noise | MAD `…/noisy-in-context-recall.yml` |
| `selective_copying` | vocab 16, seq_len 256, 16 tokens to copy | MAD `configs/tasks/selective-copying.yml` |
| `compression` | vocab 16, seq_len 32 | MAD `configs/tasks/compression.yml` |
| `memorization` | vocab 256, seq_len 32 | MAD `configs/tasks/memorization.yml` |

Zoology is HazyResearch/zoology (`multiquery_ar`); MAD is athms/mad-lab, whose instances are those of
`mad/data/instances.py` with the benchmark's `multi_query: True`. Each settings class says where its
sequences differ from the published ones.

A setting `seq_len` is the published one; `Task.seq_len` is the length the model reads, which differs
for in-context recall (MAD drops one token in the autoregressive shift) and for compression (adapted to
a causal model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor

from search_spaces.config import ConfigError, explain_validation_error

__all__ = ["IGNORE_INDEX", "TASKS", "Stream", "Task", "TaskSettings", "accuracy", "make_task"]

IGNORE_INDEX = -100
# torch seeds a CPU generator with the low 32 bits only: eval seeds stay in that range, far from small seeds
_EVAL_SEED_SHIFT = 0x9E37_79B9


class TaskSettings(BaseModel):
    """Settings of one task: frozen, unknown keys rejected, defaults as published."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    vocab_size: int
    seq_len: int

    def _input_len(self) -> int:
        return self.seq_len

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def _distinct(g: torch.Generator, shape: tuple[int, ...], n: int, k: int) -> Tensor:
    """[*shape, k]: k distinct tokens of range(n) in random order (a uniform k-permutation)."""
    return torch.rand(*shape, n, generator=g, device=g.device).topk(k, dim=-1).indices


def _randint(g: torch.Generator, low: int, high: int, shape: tuple[int, ...]) -> Tensor:
    return torch.randint(low, high, shape, generator=g, device=g.device)


class MQARSettings(TaskSettings):
    """Multi-query associative recall (Zoology, Arora et al. 2023, `multiquery_ar`).

    The sequence opens with `num_kv_pairs` key-value pairs (keys drawn without replacement from
    `1 .. vocab_size/2 - 1`, values from `vocab_size/2 .. vocab_size - 1`); then every key is asked
    again, key j at position `2·num_kv_pairs + 2·gap_j`, where the gaps are distinct draws from
    `0 .. (seq_len - 2·num_kv_pairs)/2 - 1` with probability ∝ gap^(power_a - 1) (power_a = 1: uniform;
    small power_a: most queries close to the pairs). Every other position holds a uniformly random token
    (`random_non_queries`, the default of Zoology's function) or token 0, which is never a key (False: what
    Zoology's published MQAR experiments set; random filler can repeat a key and makes the task harder).
    Only the queries are scored, each with its key's value.

    `train_pairs` (with `train_weights`, equal where left out) makes training a mixture: each training sequence
    draws its number of pairs from that list, as Zoology's reproduction trains on 4, 8, 16, 32 and 64 pairs at
    once (five parts easy to one of each other); evaluation keeps `num_kv_pairs`. It is no shortcut past the
    plateau: at cpu-tiny it slowed attention (docs/proxy-evidence.md), as few pairs reward naming any value shown.
    """

    name: ClassVar[str] = "mqar"
    vocab_size: int = Field(8192, ge=4)
    seq_len: int = Field(64, ge=4)
    num_kv_pairs: int = Field(4, ge=1)
    power_a: float = Field(0.01, gt=0, le=1)
    random_non_queries: bool = True
    train_pairs: tuple[int, ...] = ()
    train_weights: tuple[float, ...] = ()

    @model_validator(mode="after")
    def _fits(self) -> MQARSettings:
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even for mqar, got {self.seq_len}")
        if self.vocab_size <= self.seq_len:
            raise ValueError(
                f"vocab_size must be greater than seq_len ({self.seq_len}) for mqar, got {self.vocab_size}"
            )
        if 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError(
                f"num_kv_pairs={self.num_kv_pairs} is too many for seq_len={self.seq_len}; "
                f"mqar needs 4 × num_kv_pairs ≤ seq_len, so at most {self.seq_len // 4}"
            )
        bad = [n for n in self.train_pairs if not 1 <= n <= self.seq_len // 4]
        if bad:
            raise ValueError(
                f"train_pairs {bad} do not fit seq_len={self.seq_len}; each must lie in 1..{self.seq_len // 4}"
            )
        if self.train_weights and len(self.train_weights) != len(self.train_pairs):
            raise ValueError(
                f"train_weights has {len(self.train_weights)} entries for {len(self.train_pairs)} train_pairs; "
                "give one weight per pair count, or none for equal shares"
            )
        if any(w < 0 for w in self.train_weights) or (self.train_weights and sum(self.train_weights) <= 0):
            raise ValueError(f"train_weights must be non-negative with a positive sum, got {list(self.train_weights)}")
        return self

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        if not (train and self.train_pairs):
            return self._rows(batch_size, self.num_kv_pairs, g)
        weights = torch.tensor(self.train_weights or [1.0] * len(self.train_pairs), device=g.device)
        counts = torch.multinomial(weights, batch_size, replacement=True, generator=g).bincount(
            minlength=len(self.train_pairs)
        )
        rows = [self._rows(int(b), n, g) for n, b in zip(self.train_pairs, counts.tolist()) if b]
        return torch.cat([x for x, _ in rows]), torch.cat([y for _, y in rows])

    def _rows(self, batch_size: int, num_kv_pairs: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        B, T, N, V = batch_size, self.seq_len, num_kv_pairs, self.vocab_size
        half, ctx = V // 2, 2 * N
        keys = _distinct(g, (B,), half - 1, N) + 1  # [B, N]
        values = _distinct(g, (B,), V - half, N) + half  # [B, N]
        space = (T - ctx) // 2
        # successive sampling without replacement ∝ p (numpy's choice(p=, replace=False)) = Gumbel top-k
        log_p = (self.power_a - 1) * torch.arange(1, space + 1, dtype=torch.float32, device=g.device).log()
        u = torch.rand(B, space, generator=g, device=g.device)
        gaps = (log_p - (-u.log()).log()).topk(N, dim=1).indices  # [B, N]
        query_pos = ctx + 2 * gaps

        if self.random_non_queries:
            inputs = _randint(g, 0, V, (B, T))
        else:
            inputs = torch.zeros(B, T, dtype=torch.int64, device=g.device)
        inputs[:, 0:ctx:2] = keys
        inputs[:, 1:ctx:2] = values
        inputs.scatter_(1, query_pos, keys)
        targets = torch.full((B, T), IGNORE_INDEX, device=g.device).scatter_(1, query_pos, values)
        return inputs, targets


def _in_context_recall(
    batch_size: int,
    g: torch.Generator,
    train: bool,
    vocab_size: int,
    seq_len: int,
    noise_vocab: int,
    frac_noise: float,
) -> tuple[Tensor, Tensor]:
    B, dev = batch_size, g.device
    plain = vocab_size - noise_vocab
    n_keys = plain // 2
    P = seq_len // 2 - 1  # pair slots before the final probe pair
    keys = _randint(g, 0, n_keys, (B, P))
    # drawing every key's value up front is the same as drawing it at the key's first occurrence
    table = _randint(g, n_keys, plain, (B, n_keys))
    vals = table.gather(1, keys)
    pairs = torch.stack([keys, vals], dim=-1)  # [B, P, 2]
    slot = torch.arange(P, device=dev)
    noise = torch.zeros(B, P, dtype=torch.bool, device=dev)
    if frac_noise > 0:
        noise = torch.rand(B, P, generator=g, device=dev) < frac_noise
        # MAD spares one slot of 0..P so a pair exists; sparing one of 0..P-1 makes sure of it
        noise[torch.arange(B, device=dev), _randint(g, 0, P, (B,))] = False
        noise_tokens = _randint(g, plain, vocab_size, (B, P, 2))
        pairs = torch.where(noise[..., None], noise_tokens, pairs)

    first = torch.full((B, n_keys), P, device=dev).scatter_reduce(
        1, keys, torch.where(noise, P, slot).expand(B, P), "amin"
    )  # [B, n_keys] slot of each key's first pair; P: never shown
    seen = (slot > first.gather(1, keys)) & ~noise
    # the probe asks for a key drawn uniformly among the distinct keys shown
    shown = first < P
    probe_key = torch.where(shown, torch.rand(B, n_keys, generator=g, device=dev), -1.0).argmax(
        1, keepdim=True
    )
    probe_val = table.gather(1, probe_key)

    tokens = torch.cat([pairs.flatten(1), probe_key, probe_val], dim=1)  # [B, seq_len]
    ignore = torch.full_like(vals, IGNORE_INDEX)
    scored = torch.stack([ignore, torch.where(seen, vals, ignore)], dim=-1).flatten(1)
    labels = torch.cat([scored, ignore[:, :1], probe_val], dim=1)
    # MAD trains on every next token and scores only the recalls
    return tokens[:, :-1], (tokens if train else labels)[:, 1:]


class InContextRecallSettings(TaskSettings):
    """In-context recall (MAD, Poli et al. 2024), multi-query as in the benchmark.

    `seq_len/2 - 1` key-value pairs, keys uniform (with repeats) over the lower half of the vocabulary,
    each key bound to one value of the upper half within a sequence, then a final probe pair whose key
    was shown before. Scored: the value of every pair whose key appeared earlier, and the probe's value.
    The model reads `seq_len - 1` tokens (MAD's autoregressive shift). `batch(train=True)` gives the
    targets MAD trains on: every next token.
    """

    name: ClassVar[str] = "in_context_recall"
    vocab_size: int = Field(16, ge=4)
    seq_len: int = Field(128, ge=4)

    @model_validator(mode="after")
    def _even(self) -> InContextRecallSettings:
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even (key-value pairs), got {self.seq_len}")
        return self

    def _input_len(self) -> int:
        return self.seq_len - 1

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        return _in_context_recall(batch_size, g, train, self.vocab_size, self.seq_len, 0, 0.0)


class NoisyInContextRecallSettings(TaskSettings):
    """Noisy in-context recall (MAD): in-context recall where each pair slot is, with probability
    `frac_noise`, two tokens of a separate noise vocabulary (the top `noise_vocab_size` ids) instead.

    Noise is never scored; `batch(train=True)` (every next token, as MAD trains) includes it. MAD leaves
    one slot of `seq_len/2` noise-free, which can be the final, probe slot; here it is always a pair slot,
    so a sequence always has a key to probe.
    """

    name: ClassVar[str] = "noisy_in_context_recall"
    vocab_size: int = Field(32, ge=4)
    seq_len: int = Field(128, ge=4)
    noise_vocab_size: int = Field(16, ge=1)
    frac_noise: float = Field(0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _fits(self) -> NoisyInContextRecallSettings:
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even (key-value pairs), got {self.seq_len}")
        if self.vocab_size - self.noise_vocab_size < 2:
            raise ValueError(
                f"noise_vocab_size={self.noise_vocab_size} leaves no keys and values in "
                f"vocab_size={self.vocab_size}; use at most {self.vocab_size - 2}"
            )
        return self

    def _input_len(self) -> int:
        return self.seq_len - 1

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        return _in_context_recall(
            batch_size, g, train, self.vocab_size, self.seq_len, self.noise_vocab_size, self.frac_noise
        )


class FuzzyInContextRecallSettings(TaskSettings):
    """Fuzzy in-context recall (MAD): keys and values are motifs of 1..k (1..v) distinct adjacent tokens.

    Key tokens are `0 .. (vocab_size-1)//2 - 1`, value tokens the rest below `vocab_size - 1`, which pads
    the front of the sequence to `seq_len + 1` tokens before the shift. A key keeps the value it got at
    its first occurrence; a probe pair is placed at a random point and asked again at the end. Scored:
    the value tokens of every pair whose key appeared earlier, and of the final probe. As in MAD,
    evaluation keys all have `k_motif_size` tokens, training keys 1..k tokens (`batch(train=True)`, whose
    targets are every next token).

    One difference in the layout: MAD inserts the probe pair at the first pair starting at or after a
    uniform position and can, near the end, leave it out (its final probe then asks for an unseen key);
    here pairs fill the room left for two probes and the probe always goes in before the first pair at
    or after a uniform position within them.
    """

    name: ClassVar[str] = "fuzzy_in_context_recall"
    vocab_size: int = Field(16, ge=5)
    seq_len: int = Field(128, ge=8)
    k_motif_size: int = Field(3, ge=1)
    v_motif_size: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> FuzzyInContextRecallSettings:
        n_keys = (self.vocab_size - 1) // 2
        n_vals = self.vocab_size - 1 - n_keys
        if self.k_motif_size > n_keys:
            raise ValueError(
                f"k_motif_size={self.k_motif_size} needs that many distinct key tokens but vocab_size="
                f"{self.vocab_size} has {n_keys}; use at most {n_keys}"
            )
        if self.v_motif_size > n_vals:
            raise ValueError(
                f"v_motif_size={self.v_motif_size} needs that many distinct value tokens but vocab_size="
                f"{self.vocab_size} has {n_vals}; use at most {n_vals}"
            )
        if (n_keys + 1) ** self.k_motif_size >= 2**62:
            raise ValueError(
                f"k_motif_size={self.k_motif_size} gives too many distinct keys at "
                f"vocab_size={self.vocab_size}"
            )
        width = self.k_motif_size + self.v_motif_size
        if self.seq_len <= 3 * width:
            raise ValueError(
                f"seq_len must be greater than 3 × (k_motif_size + v_motif_size) = {3 * width}, "
                f"got {self.seq_len}"
            )
        return self

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        B, L, km, vm, dev = batch_size, self.seq_len, self.k_motif_size, self.v_motif_size, g.device
        pad = self.vocab_size - 1
        n_keys = pad // 2
        W = km + vm
        S = L // 2  # pair slots: more than fit, since a pair has at least two tokens

        def key_sizes(*shape: int) -> Tensor:
            return _randint(g, 1, km + 1, shape) if train else torch.full(shape, km, device=dev)

        k_size, v_size = key_sizes(B, S), _randint(g, 1, vm + 1, (B, S))
        k_tok = _distinct(g, (B, S), n_keys, km)  # [B, S, km]
        v_tok = _distinct(g, (B, S), pad - n_keys, vm) + n_keys  # [B, S, vm]
        pk_size, pv_size = key_sizes(B), _randint(g, 1, vm + 1, (B,))
        pk_tok = _distinct(g, (B,), n_keys, km)  # [B, km]
        pv_tok = _distinct(g, (B,), pad - n_keys, vm) + n_keys  # [B, vm]

        digit = (n_keys + 1) ** torch.arange(km, device=dev)

        def key_id(tok: Tensor, size: Tensor) -> Tensor:
            return (torch.where(torch.arange(km, device=dev) < size[..., None], tok + 1, 0) * digit).sum(-1)

        ids, probe_id = key_id(k_tok, k_size), key_id(pk_tok, pk_size)  # [B, S], [B]

        # a key keeps the value of its first occurrence: group equal ids with a stable sort
        slot = torch.arange(S, device=dev).expand(B, S)
        sorted_ids, order = ids.sort(dim=1, stable=True)
        group_start = torch.ones_like(sorted_ids, dtype=torch.bool)
        group_start[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
        first_sorted = order.gather(1, torch.where(group_start, slot, 0).cummax(1).values)
        first = torch.empty_like(order).scatter_(1, order, first_sorted)  # [B, S]
        is_probe = ids == probe_id[:, None]
        v_tok = torch.where(
            is_probe[..., None], pv_tok[:, None], v_tok.gather(1, first[..., None].expand(B, S, vm))
        )
        v_size = torch.where(is_probe, pv_size[:, None], v_size.gather(1, first))
        seen = first < slot

        length = k_size + v_size
        start = length.cumsum(1) - length
        probe_len = pk_size + pv_size
        kept = (
            start < (L - 2 * probe_len - W)[:, None]
        )  # MAD's loop bound, less the room of the inserted probe
        used = (length * kept).sum(1)
        probe_at = (torch.rand(B, generator=g, device=dev) * used).long()
        after = (start >= probe_at[:, None]) | ~kept  # slots placed after the inserted probe
        seen = seen | (is_probe & after)
        probe_seen = (is_probe & ~after).any(1)
        pad_len = L + 1 - used - 2 * probe_len  # ≥ 2

        # three groups of segments: the pairs [B, S], the inserted probe and the final probe [B, 1]
        seg_k = torch.cat([k_tok, pk_tok[:, None], pk_tok[:, None]], dim=1)
        seg_v = torch.cat([v_tok, pv_tok[:, None], pv_tok[:, None]], dim=1)
        seg_ks = torch.cat([k_size, pk_size[:, None], pk_size[:, None]], dim=1)
        seg_vs = torch.cat([v_size, pv_size[:, None], pv_size[:, None]], dim=1)
        ones = torch.ones(B, 1, dtype=torch.bool, device=dev)
        seg_scored = torch.cat([seen, probe_seen[:, None], ones], dim=1)
        seg_kept = torch.cat([kept, ones, ones], dim=1)
        seg_start = torch.cat(
            [
                start + after * probe_len[:, None],
                (length * ~after).sum(1, keepdim=True),
                (used + probe_len)[:, None],
            ],
            dim=1,
        )

        o = torch.arange(W, device=dev)  # offset within a segment: key tokens, then value tokens
        is_key = o < seg_ks[..., None]
        k_at = seg_k.gather(2, o.clamp(max=km - 1).expand(B, S + 2, W))
        v_at = seg_v.gather(2, (o - seg_ks[..., None]).clamp(0, vm - 1))
        tok = torch.where(is_key, k_at, v_at)
        valid = (o < (seg_ks + seg_vs)[..., None]) & seg_kept[..., None]
        lab = torch.where(~is_key & valid & seg_scored[..., None], tok, IGNORE_INDEX)
        dest = torch.where(valid, pad_len[:, None, None] + seg_start[..., None] + o, L + 1).flatten(1)

        # column L + 1 takes the writes of unused offsets and is dropped
        tokens = torch.full((B, L + 2), pad, device=dev).scatter_(1, dest, tok.flatten(1))[:, : L + 1]
        labels = torch.full((B, L + 2), IGNORE_INDEX, device=dev).scatter_(1, dest, lab.flatten(1))[
            :, : L + 1
        ]
        return tokens[:, :-1], (tokens if train else labels)[:, 1:]


class SelectiveCopyingSettings(TaskSettings):
    """Selective copying (MAD): `num_tokens_to_copy` tokens (ids below `vocab_size - 2`, with repeats)
    scattered among blanks (`vocab_size - 2`), then the copy token (`vocab_size - 1`) and as many blanks.

    Each of the `seq_len - 2·num_tokens_to_copy - 1` blanks goes in front of a uniformly chosen token
    to copy (so the last one is never followed by a blank), as MAD's `np.insert` does. Scored, as in
    MAD: the trailing blanks, the i-th with the i-th token to copy (the model answers one position after
    the copy token and is never shown its own answers).
    """

    name: ClassVar[str] = "selective_copying"
    vocab_size: int = Field(16, ge=3)
    seq_len: int = Field(256, ge=4)
    num_tokens_to_copy: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> SelectiveCopyingSettings:
        if self.seq_len <= 2 * self.num_tokens_to_copy + 1:
            raise ValueError(
                f"num_tokens_to_copy={self.num_tokens_to_copy} is too many for seq_len={self.seq_len}; "
                f"selective copying needs seq_len > 2 × num_tokens_to_copy + 1, "
                f"so at most {(self.seq_len - 2) // 2}"
            )
        return self

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        B, T, n, V, dev = batch_size, self.seq_len, self.num_tokens_to_copy, self.vocab_size, g.device
        n_blank = T - 2 * n - 1
        to_copy = _randint(g, 0, V - 2, (B, n))
        before = _randint(g, 0, n, (B, n_blank))  # the token each blank goes in front of
        blanks_before = torch.zeros(B, n, dtype=torch.long, device=dev).scatter_add_(
            1, before, torch.ones_like(before)
        )
        pos = blanks_before.cumsum(1) + torch.arange(n, device=dev)  # [B, n]
        inputs = torch.full((B, T), V - 2, device=dev).scatter_(1, pos, to_copy)
        inputs[:, n + n_blank] = V - 1
        targets = torch.full((B, T), IGNORE_INDEX, device=dev)
        targets[:, T - n :] = to_copy
        return inputs, targets


class CompressionSettings(TaskSettings):
    """Compression (MAD), adapted to a causal language model.

    MAD encodes `seq_len - 1` uniform tokens (ids below `vocab_size - 1`) and a compression token
    (`vocab_size - 1`) into the last position's vector, and a per-position MLP decoder reconstructs the
    sequence from that vector and a position embedding alone. Here the sequence and its compression
    token are followed by `seq_len - 2` more compression tokens; at the i-th compression token the model
    must emit the i-th token of the sequence, with no access to its earlier answers, as MAD's decoder.
    The model reads `2·(seq_len - 1)` tokens. Scored: the `seq_len - 1` reproduced tokens (MAD also scores
    the reconstruction of the compression token itself, which is trivial and left out). A causal model
    may look back at the sequence instead of compressing it; for a recurrent layer the state is the
    bottleneck, as the encoding vector is in MAD.
    """

    name: ClassVar[str] = "compression"
    vocab_size: int = Field(16, ge=3)
    seq_len: int = Field(32, ge=2)

    def _input_len(self) -> int:
        return 2 * (self.seq_len - 1)

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        B, n, V, dev = batch_size, self.seq_len - 1, self.vocab_size, g.device
        seq = _randint(g, 0, V - 1, (B, n))
        inputs = torch.cat([seq, torch.full((B, n), V - 1, device=dev)], dim=1)
        targets = torch.cat([torch.full((B, n), IGNORE_INDEX, device=dev), seq], dim=1)
        return inputs, targets


class MemorizationSettings(TaskSettings):
    """Memorization (MAD): `seq_len/2` pairs `key, insert-token`, keys uniform over
    `0 .. (vocab_size-1)//2 - 1`; scored at each insert token (`vocab_size - 1`) with the key's value.

    The key→value map is one random injection into the upper half of the vocabulary, fixed by
    `kv_seed` (MAD's `kv_map_seed`; MAD derives it from the run seed, 12345 by default), so every batch
    and stream of a task — training and evaluation alike — share it: the facts are learnt in training.
    """

    name: ClassVar[str] = "memorization"
    vocab_size: int = Field(256, ge=4)
    seq_len: int = Field(32, ge=2)
    kv_seed: int = Field(12345, ge=0)

    @model_validator(mode="after")
    def _even(self) -> MemorizationSettings:
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even (key, insert-token pairs), got {self.seq_len}")
        return self

    def _sample(self, batch_size: int, g: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        B, T, dev = batch_size, self.seq_len, g.device
        plain = self.vocab_size - 1
        n_keys = plain // 2
        fixed = torch.Generator().manual_seed(self.kv_seed)
        value_of = (torch.randperm(plain - n_keys, generator=fixed)[:n_keys] + n_keys).to(dev)  # [n_keys]
        keys = _randint(g, 0, n_keys, (B, T // 2))
        inputs = torch.full((B, T), plain, device=dev)
        inputs[:, 0::2] = keys
        targets = torch.full((B, T), IGNORE_INDEX, device=dev)
        targets[:, 1::2] = value_of[keys]
        return inputs, targets


TASKS: dict[str, type[TaskSettings]] = {
    cls.name: cls
    for cls in (
        MQARSettings,
        InContextRecallSettings,
        FuzzyInContextRecallSettings,
        NoisyInContextRecallSettings,
        SelectiveCopyingSettings,
        CompressionSettings,
        MemorizationSettings,
    )
}


@dataclass(frozen=True)
class Task:
    """A synthetic task with its settings (`config`); batches are drawn from a caller's generator."""

    config: TaskSettings

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def seq_len(self) -> int:
        """Length of the sequences the model reads (T of every batch)."""
        return self.config._input_len()

    def settings(self) -> dict[str, Any]:
        """The settings as plain values, to record beside a score."""
        return self.config.model_dump(mode="json")

    def batch(
        self, batch_size: int, generator: torch.Generator, *, train: bool = False
    ) -> tuple[Tensor, Tensor]:
        """(inputs, targets), int64 [batch_size, seq_len] each, on the generator's device.

        Deterministic given the generator's state. `train=True` returns the targets the published recipe
        trains on: every next token for MAD's three in-context recall tasks (whose training keys in the
        fuzzy task also vary in length), the scored positions for the others.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        return self.config._sample(batch_size, generator, train)

    @staticmethod
    def eval_seed(seed: int) -> int:
        """The seed of the evaluation stream that goes with training seed `seed` (never equal to it)."""
        return (seed + _EVAL_SEED_SHIFT) % 2**32

    def split(self, seed: int) -> tuple[Stream, Stream]:
        """(train, eval) streams: CPU generators seeded with `seed` and `eval_seed(seed)`.

        Calling it again restarts both, so an evaluation can be replayed exactly.
        """
        train = torch.Generator().manual_seed(seed % 2**32)
        evaluation = torch.Generator().manual_seed(self.eval_seed(seed))
        return Stream(self, train, train=True), Stream(self, evaluation, train=False)


@dataclass
class Stream:
    """Consecutive batches of one task from one generator."""

    task: Task
    generator: torch.Generator
    train: bool = False

    def batch(self, batch_size: int) -> tuple[Tensor, Tensor]:
        return self.task.batch(batch_size, self.generator, train=self.train)


def make_task(name: str, **settings: Any) -> Task:
    """The task `name` with its published defaults, overridden by `settings`."""
    cls = TASKS.get(name)
    if cls is None:
        raise ConfigError(f"unknown synthetic task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    try:
        return Task(cls(**settings))
    except ValidationError as err:
        raise ConfigError(explain_validation_error(err, cls, f"task {name}")) from None


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Share of scored positions (targets != -100) where argmax(logits [B, T, V]) equals targets [B, T]."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)} "
            "as [B, T, V] and [B, T]"
        )
    scored = targets != IGNORE_INDEX
    if not scored.any():
        raise ValueError("the targets have no scored positions (every entry is -100)")
    return (logits.argmax(-1)[scored] == targets[scored]).float().mean().item()
