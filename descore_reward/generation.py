"""Generating CoTs: sampling without touching the process-wide random generators, and progress.

Diffusion RL loops (Flow-GRPO) score rewards in a worker thread while the main thread keeps drawing
noise from the global generator. `transformers`' sampling draws from that generator, and saving and
restoring it around a reward call (`torch.random.fork_rng`) rewinds the main thread's draws. So
DeScore samples with a `PrivateSampler`: a logits processor that draws the next token from its own
`torch.Generator` and leaves only that token possible, and greedy decoding then emits it.

A CoT budget of 4,096 tokens on a slow machine runs for minutes per batch: `TokenProgress` shows the
tokens written so far on the videos' progress bar.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor
from transformers.generation.streamers import BaseStreamer

from .errors import DeScoreInputError


class PrivateSampler(LogitsProcessor):
    """Temperature and nucleus (top-p) sampling from a generator of its own.

    seed: seeds the generator (reproducible samples); None seeds it from the OS, still without drawing
        from any global generator.
    Use with `do_sample=False`: the processed scores `(B, V)` are 0 at the drawn token and -inf elsewhere.
    """

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None):
        if not temperature > 0:
            raise DeScoreInputError(f"temperature must be positive, got {temperature}")
        if not 0 < top_p <= 1:
            raise DeScoreInputError(f"top_p must lie in (0, 1], got {top_p}")
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.generator: torch.Generator | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device)
            if self.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.seed)
        return self.generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_p < 1:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probabilities = sorted_logits.softmax(-1)
            before = probabilities.cumsum(-1) - probabilities  # mass of the more likely tokens
            sorted_logits = sorted_logits.masked_fill(before >= self.top_p, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        drawn = torch.multinomial(logits.softmax(-1), 1, generator=self._generator(scores.device))  # (B, 1)
        return torch.full_like(scores, float("-inf")).scatter(-1, drawn, 0.0)


class TokenProgress(BaseStreamer):
    """A `generate` streamer that writes the batch's token count onto a tqdm bar `bar` (of videos)."""

    def __init__(self, bar, budget: int):
        self.bar, self.budget, self.tokens, self.prompt_seen = bar, budget, 0, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate first streams the prompt itself
            self.prompt_seen = True
            return
        self.tokens += 1
        if self.tokens % 8 == 0 or self.tokens == 1:
            self.bar.set_postfix_str(f"{self.tokens} of at most {self.budget} tokens", refresh=True)

    def end(self) -> None:
        self.bar.set_postfix_str(f"{self.tokens} tokens", refresh=True)
