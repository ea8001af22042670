"""Per-row SDXL conditioning under every batch layout of the one loop: when hooks drop a row's
unconditional pass or leave a row out, each remaining UNet row still gets its own pooled text and size
numbers (a row's picture equals the same row sampled alone)."""

from __future__ import annotations

import torch

from charforge.engine import Hook, PromptEmbeds, denoise, encode_pair, initial_noise, make_scheduler, seeded_generators

PROMPTS = ["a girl with red hair", "a cat in the forest"]
NEGATIVES = ["blue", "night"]
SIZES = [(32, 32), (64, 48)]  # different original sizes per row: rows must not trade them


class _Rows(Hook):
    def __init__(self, skip=(), unguided=()):
        self.skip, self.unguided = skip, unguided

    def skip_rows(self, ctx):
        return self.skip

    def unguided_rows(self, ctx):
        return self.unguided


def _conditioning(model, rows):
    cond, uncond = encode_pair(model, [PROMPTS[r] for r in rows], [NEGATIVES[r] for r in rows])
    sized = [(cond.rows([i]), uncond.rows([i])) for i in range(len(rows))]
    sized = [
        (c.with_size(model, 32, 32, SIZES[r]), u.with_size(model, 32, 32, SIZES[r])) for (c, u), r in zip(sized, rows)
    ]
    return PromptEmbeds.cat([c for c, _ in sized]), PromptEmbeds.cat([u for _, u in sized])


def _run(model, rows, hooks=(), guidance=7.5):
    scheduler = make_scheduler("ddim", model.scheduler.config)
    scheduler.set_timesteps(3)
    noise = initial_noise(model, (len(rows), 4, 16, 16), seeded_generators([10 + r for r in rows]))
    cond, uncond = _conditioning(model, rows)
    return noise, denoise(model, scheduler, noise, cond, uncond, guidance, hooks)


def test_an_unguided_row_equals_that_row_sampled_without_guidance(tiny_sdxl):
    _, both = _run(tiny_sdxl, [0, 1], [_Rows(unguided=(0,))])
    _, alone_unguided = _run(tiny_sdxl, [0], guidance=1.0)
    _, alone_guided = _run(tiny_sdxl, [1])
    assert (both[:1] - alone_unguided).abs().max() <= 1e-4
    assert (both[1:] - alone_guided).abs().max() <= 1e-4


def test_a_skipped_row_keeps_its_latent_and_the_other_row_its_conditioning(tiny_sdxl):
    noise, both = _run(tiny_sdxl, [0, 1], [_Rows(skip=(0,))])
    _, alone = _run(tiny_sdxl, [1])
    assert torch.equal(both[0], noise[0])
    assert (both[1:] - alone).abs().max() <= 1e-4


def test_size_conditioning_is_per_row(tiny_sdxl):
    _, mixed = _run(tiny_sdxl, [1])
    scheduler = make_scheduler("ddim", tiny_sdxl.scheduler.config)
    scheduler.set_timesteps(3)
    noise = initial_noise(tiny_sdxl, (1, 4, 16, 16), seeded_generators([11]))
    cond, uncond = encode_pair(tiny_sdxl, PROMPTS[1:], NEGATIVES[1:])
    default_size = denoise(tiny_sdxl, scheduler, noise, cond, uncond, 7.5)  # the image's own size
    assert (mixed - default_size).abs().max() > 1e-3
