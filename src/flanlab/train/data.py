"""The training data stream: the mixture tokenized once, permuted per epoch and packed deterministically, so
global step s always reads the same rows (a pure function of seed, epoch and step: resume continues exactly)."""
from __future__ import annotations

import numpy as np

from ..errors import FlanlabError
from ..mixture import read_mixture
from .config import TrainConfig
from .packing import pack, tokenize_pair


class DataStream:
    """Deterministic packed batches: step -> list of rows."""

    def __init__(self, cfg: TrainConfig, tok, encoder_decoder: bool):
        self.cfg, self.encoder_decoder = cfg, encoder_decoder
        recs = list(read_mixture(cfg.mixture))
        if cfg.max_examples:
            recs = recs[: cfg.max_examples]
        if not recs:
            raise FlanlabError("mixture has no examples", file=cfg.mixture)
        self.examples = [tokenize_pair(tok, r["inputs"], r["targets"], cfg.max_input_len, cfg.max_target_len,
                                       encoder_decoder, cfg.chat_template) for r in recs]
        self.rows_per_step = cfg.batch_size * cfg.grad_accum
        self._rows: tuple[int, list] | None = None  # (epoch, rows): one epoch in memory
        self._steps_in_epoch: dict[int, int] = {}  # epoch -> whole steps it holds

    def epoch_rows(self, epoch: int) -> list:
        if self._rows is None or self._rows[0] != epoch:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.examples))
            examples = [self.examples[i] for i in order]
            c = self.cfg
            row_in, row_out = max(c.row_input_len or 0, c.max_input_len), max(c.row_target_len or 0, c.max_target_len)
            rows = pack(examples, self.encoder_decoder, row_in, row_out) if c.packing else [[e] for e in examples]
            if c.group_by_length:
                rows = group_rows(rows, self.rows_per_step, self.encoder_decoder,
                                  np.random.default_rng([c.seed, epoch, 1]))
            self._rows = (epoch, rows)
            self._steps_in_epoch[epoch] = len(rows) // self.rows_per_step
            if self._steps_in_epoch[epoch] == 0:
                raise FlanlabError(f"mixture packs into {len(rows)} rows, fewer than one step's {self.rows_per_step}",
                                   file=self.cfg.mixture, field="batch_size")
        return self._rows[1]

    def _steps(self, epoch: int) -> int:
        if epoch not in self._steps_in_epoch:
            self.epoch_rows(epoch)
        return self._steps_in_epoch[epoch]

    def step_rows(self, step: int) -> list:
        """Rows for global step `step` (0-based); steps never straddle epochs (a short tail is dropped)."""
        e, s = 0, step
        while s >= self._steps(e):
            s -= self._steps(e)
            e += 1
        return self.epoch_rows(e)[s * self.rows_per_step:(s + 1) * self.rows_per_step]


def group_rows(rows: list, per_step: int, encoder_decoder: bool, rng, window_steps: int = 64) -> list:
    """Within each window of `window_steps` steps, sort rows by length (decoder length first for T5) and cut
    them into steps; then shuffle the order of the steps. Every row is kept exactly once."""
    def key(r):
        dec = sum(len(e.targets) for e in r)
        enc = sum(len(e.inputs) for e in r)
        return (dec, enc) if encoder_decoder else (enc + dec, 0)
    out, w = [], per_step * window_steps
    for i in range(0, len(rows), w):
        block = sorted(rows[i:i + w], key=key)
        steps = [block[j:j + per_step] for j in range(0, len(block), per_step)]
        full, tail = [st for st in steps if len(st) == per_step], [st for st in steps if len(st) < per_step]
        for k in rng.permutation(len(full)):
            out += full[k]
        for st in tail:
            out += st
    return out
