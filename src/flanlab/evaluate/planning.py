"""Planning requests into batches: rows of similar length together (bounded padding, tokens and rows per batch), and
decoder-only requests whose token sequences share a long prefix (a few-shot prompt's exemplars, shared by every
question of a task) grouped so that the prefix is computed once per group."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefix_groups(seqs: list[list[int]], min_prefix: int, min_saving: int = 1,
                         keep: list[int] | None = None) -> list[tuple[int, list[int]]]:
    """Groups of sequence indices that share a token prefix of at least `min_prefix` tokens, as
    (prefix length, indices). The prefix leaves every member at least keep[i] (default 1) tokens of its own:
    the positions whose outputs are read must run in the member's own rows.
    A group is kept when sharing saves at least `min_saving` prefix tokens ((members - 1) x prefix); the rest
    end up together in one group with prefix 0 (batched together rather than in many small batches)."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    groups: list[tuple[int, list[int]]] = []
    loose: list[int] = []
    run, run_lcp = order[:1], None

    def close():
        if len(run) > 1:
            plen = min(run_lcp, min(len(seqs[i]) - (keep[i] if keep else 1) for i in run))
            if (len(run) - 1) * plen >= min_saving:
                groups.append((plen, list(run)))
                return
        loose.extend(run)
    for prev, i in zip(order, order[1:]):
        lcp = _lcp(seqs[prev], seqs[i])
        joined = lcp if run_lcp is None else min(run_lcp, lcp)
        if joined >= min_prefix:
            run.append(i)
            run_lcp = joined
        else:
            close()
            run, run_lcp = [i], None
    if run:
        close()
    fixed = [(p, g) for p, g in groups if p >= min_prefix]
    loose += [i for p, g in groups if p < min_prefix for i in g]
    if loose:
        fixed.append((0, sorted(loose)))
    return fixed


@dataclass
class Planner:
    batch_tokens: int = 16384  # tokens a batch computes (rows x width; a shared prefix is computed once)
    max_batch_rows: int = 32  # rows of one batch (each holds its own KV cache)
    min_fill: float = 0.75  # rows at least this share of the batch's width (bounds padding)
    min_shared_prefix: int = 64  # 0 turns prefix sharing off

    def batches(self, lengths: list[int], mult: list[int]) -> Iterator[list[int]]:
        """Positions into `lengths`, longest first, in batches of at most batch_tokens (width x rows) and
        max_batch_rows rows (a position counts mult[i] rows); a row shorter than min_fill of the batch's width starts a
        new batch (few-shot questions of one subject vary 5x in length: padding them all to the longest would double
        the compute)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch, width = [], 0
        for i in order:
            w = max(width, lengths[i])
            rows = sum(mult[j] for j in batch) + mult[i]
            if batch and (w * rows > self.batch_tokens or rows > self.max_batch_rows
                          or lengths[i] < self.min_fill * w):
                yield batch
                batch, w = [], lengths[i]
            batch.append(i)
            width = w
        if batch:
            yield batch

    def prefix_batches(self, seqs: dict[int, list[int]], extra: Callable[[int], int], rows: Callable[[int], int],
                       generating: bool = False, keep: Callable[[int], int] = lambda i: 1
                       ) -> Iterator[tuple[list[int], list[int]]]:
        """(shared prefix tokens, indices) batches: groups by shared prefix, then length-sorted batches of the
        suffixes, sized by suffix + extra(i) tokens (the prefix is computed once per group, not per row); each
        suffix keeps at least keep(i) tokens."""
        idx = list(seqs)
        min_prefix = self.min_shared_prefix if self.min_shared_prefix > 0 else 1 << 30
        # generation: a group gets its own decoding loop, worth it only when sharing saves more prefill than the
        # loop costs (a decode step of a batch costs about as much as prefilling 16 tokens here)
        saving = 16 * max((extra(i) for i in idx), default=0) if generating else 1
        for plen, group in shared_prefix_groups([seqs[i] for i in idx], min_prefix, saving, [keep(i) for i in idx]):
            members = [idx[g] for g in group]
            prefix = seqs[members[0]][:plen]
            lengths = [len(seqs[i]) - plen + extra(i) for i in members]
            for b in self.batches(lengths, [rows(i) for i in members]):
                yield prefix, [members[j] for j in b]
