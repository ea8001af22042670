"""The one loop's hooks, each exercised by a small example of the feature that will use it."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor

from charforge.engine import (
    Hook,
    LossGuidance,
    colour_loss,
    decode_latents,
    denoise,
    encode_prompts,
    initial_noise,
    make_scheduler,
    predict_x0,
    seeded_generators,
    txt2img,
)

PROMPT = "a portrait of a girl with red hair"
STEPS = 4


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


class _Boom(RuntimeError):
    pass


class _CountingProcessor(AttnProcessor):
    """A real processor (plain attention) that counts its calls, to prove it was installed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, attn, hidden_states, *args, **kwargs):
        self.calls += 1
        return super().__call__(attn, hidden_states, *args, **kwargs)


class _RaisingProcessors(Hook):
    def __init__(self, raise_at: int) -> None:
        self.processor, self.raise_at, self.ended = _CountingProcessor(), raise_at, False

    def attention_processors(self, unet):
        return {name: self.processor for name in unet.attn_processors}

    def on_step_begin(self, ctx):
        if ctx.index == self.raise_at:
            raise _Boom("controller failed")

    def on_end(self, ctx):
        self.ended = True


def test_attention_processors_are_restored_after_a_call_that_raised(tiny_model):
    before = dict(tiny_model.unet.attn_processors)
    hook = _RaisingProcessors(raise_at=1)
    with pytest.raises(_Boom):
        txt2img(tiny_model, PROMPT, steps=STEPS, hooks=[hook])
    assert hook.processor.calls > 0  # it really was installed for step 0
    assert hook.ended  # on_end runs even when the call raised
    after = tiny_model.unet.attn_processors
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)


class _PerStepUncond(Hook):
    def __init__(self, embeddings: list[torch.Tensor]) -> None:
        self.embeddings, self.seen = embeddings, []

    def uncond_embeddings(self, ctx):
        self.seen.append(ctx.index)
        return self.embeddings[ctx.index]


def test_per_step_uncond_embeddings_replace_the_negative_prompt(tiny_model):
    plain = txt2img(tiny_model, PROMPT, negative="blue eyes", seed=4, steps=STEPS)
    negative = encode_prompts(tiny_model, ["blue eyes"])
    same = _PerStepUncond([negative.clone() for _ in range(STEPS)])
    # the per-step list decides, whatever negative prompt the call carries
    reproduced = txt2img(tiny_model, PROMPT, negative="", seed=4, steps=STEPS, hooks=[same])
    assert same.seen == list(range(STEPS))
    assert _max_diff(reproduced.pixels, plain.pixels) <= 1e-5

    other = encode_prompts(tiny_model, ["green"])
    mixed = [negative] * (STEPS - 1) + [other]  # only the last step differs
    changed = txt2img(tiny_model, PROMPT, negative="blue eyes", seed=4, steps=STEPS, hooks=[_PerStepUncond(mixed)])
    assert _max_diff(changed.latents, plain.latents) > 1e-3


class _Recorder(Hook):
    def __init__(self) -> None:
        self.steps, self.timesteps = [], []

    def on_step_end(self, ctx, latents):
        self.steps.append(ctx.index)
        self.timesteps.append(int(ctx.timestep))
        return latents


class _ZeroAtEnd(Hook):
    def on_step_end(self, ctx, latents):
        return torch.zeros_like(latents) if ctx.index == ctx.num_steps - 1 else latents


def test_latent_callback_runs_after_every_step_and_its_result_is_used(tiny_model):
    recorder = _Recorder()
    result = txt2img(tiny_model, PROMPT, steps=STEPS, hooks=[recorder, _ZeroAtEnd()])
    scheduler = make_scheduler("ddim", tiny_model.scheduler.config)
    scheduler.set_timesteps(STEPS)
    assert recorder.steps == list(range(STEPS))
    assert recorder.timesteps == [int(t) for t in scheduler.timesteps]
    assert result.latents.abs().max().item() == 0
    zeros = ((decode_latents(tiny_model, torch.zeros_like(result.latents)) / 2 + 0.5).clamp(0, 1)).detach()
    assert _max_diff(result.pixels, zeros) <= 1e-6


def test_loss_guidance_moves_the_colour_towards_the_target(tiny_model):
    """The HF course's colour loss, through the VAE decoder. A random decoder is nearly flat (its
    output barely depends on the latents), hence the large scale; the direction is what is tested."""
    target = (0.1, 0.9, 0.5)
    loss = colour_loss(target)
    plain = txt2img(tiny_model, PROMPT, seed=1, steps=STEPS)
    guided = txt2img(tiny_model, PROMPT, seed=1, steps=STEPS, hooks=[LossGuidance(tiny_model, loss, scale=4000.0)])
    before, after = loss(plain.pixels * 2 - 1).item(), loss(guided.pixels * 2 - 1).item()
    assert after < 0.98 * before, (before, after)
    moved = guided.pixels.mean((0, 2, 3)) - plain.pixels.mean((0, 2, 3))
    wanted = torch.tensor(target) - plain.pixels.mean((0, 2, 3))
    assert torch.all(torch.sign(moved) == torch.sign(wanted)), (moved, wanted)


@pytest.mark.slow
def test_loss_guidance_on_latents_pulls_x0_to_the_target(tiny_model):
    target = torch.tensor([1.0, -1.0, 0.5, 0.0])[None, :, None, None]
    loss = lambda x0: (x0.mean((2, 3), keepdim=True) - target).pow(2).sum()  # noqa: E731
    plain = txt2img(tiny_model, PROMPT, seed=1, steps=STEPS)
    weak = txt2img(tiny_model, PROMPT, seed=1, steps=STEPS, hooks=[LossGuidance(tiny_model, loss, 1.0, on_pixels=False)])
    strong = txt2img(tiny_model, PROMPT, seed=1, steps=STEPS, hooks=[LossGuidance(tiny_model, loss, 5.0, on_pixels=False)])
    distances = [loss(run.latents).item() for run in (plain, weak, strong)]
    assert distances[0] > distances[1] > distances[2], distances
    assert distances[2] < 0.2 * distances[0], distances


@pytest.mark.slow
def test_a_batch_of_prompts_equals_the_single_runs(tiny_model):
    prompts, seeds = ["a girl with red hair", "a cat in the city"], [3, 9]
    batch = txt2img(tiny_model, prompts, negative=["blue", "night"], seed=seeds, steps=STEPS, scheduler="euler-a")
    for row, (prompt, negative, seed) in enumerate(zip(prompts, ["blue", "night"], seeds)):
        single = txt2img(tiny_model, prompt, negative=negative, seed=seed, steps=STEPS, scheduler="euler-a")
        assert _max_diff(batch.pixels[row], single.pixels[0]) <= 1e-4
    assert [p.seed for p in batch.params] == seeds


def _two_row_start(model, scheduler, prompts, seed=6):
    latents = initial_noise(model, (2, 4, 16, 16), seeded_generators([seed, seed])) * scheduler.init_noise_sigma
    return latents, encode_prompts(model, prompts), encode_prompts(model, [""] * len(prompts))


class _Rows(Hook):
    def __init__(self, skip=(), unguided=()) -> None:
        self.skip, self.unguided, self.layouts = skip, unguided, []

    def skip_rows(self, ctx):
        return self.skip

    def unguided_rows(self, ctx):
        return self.unguided

    def on_step_end(self, ctx, latents):
        self.layouts.append(ctx.layout)
        return latents


def test_skipped_rows_keep_their_latents_and_leave_the_others_unchanged(tiny_model):
    prompts = ["a girl with red hair", "a girl with blue hair"]
    runs = {}
    for name, hook in (("both", _Rows()), ("skip", _Rows(skip=(0,)))):
        scheduler = make_scheduler("ddim", tiny_model.scheduler.config)
        scheduler.set_timesteps(STEPS)
        start, cond, uncond = _two_row_start(tiny_model, scheduler, prompts)
        runs[name] = (start, denoise(tiny_model, scheduler, start.clone(), cond, uncond, 7.5, [hook]), hook)
    start, skipped, hook = runs["skip"]
    assert torch.equal(skipped[0], start[0])
    assert _max_diff(skipped[1], runs["both"][1][1]) <= 1e-4  # latents are O(10); batch shape changes rounding
    assert hook.layouts[0].cond_rows == (1,) and hook.layouts[0].uncond_rows == (1,)
    assert hook.layouts[0].position(1) == 1 and hook.layouts[0].position(0) is None


@pytest.mark.slow
def test_unguided_rows_get_the_conditional_prediction_only(tiny_model):
    prompts = ["a girl with red hair", "a girl with blue hair"]
    scheduler = make_scheduler("ddim", tiny_model.scheduler.config)
    scheduler.set_timesteps(STEPS)
    start, cond, uncond = _two_row_start(tiny_model, scheduler, prompts)
    hook = _Rows(unguided=(0,))
    mixed = denoise(tiny_model, scheduler, start.clone(), cond, uncond, 7.5, [hook])
    assert hook.layouts[0].uncond_rows == (1,) and hook.layouts[0].cond_rows == (0, 1)

    scheduler.set_timesteps(STEPS)
    unguided = denoise(tiny_model, scheduler, start.clone(), cond, None, 1.0)
    scheduler.set_timesteps(STEPS)
    guided = denoise(tiny_model, scheduler, start.clone(), cond, uncond, 7.5)
    assert _max_diff(mixed[0], unguided[0]) <= 1e-4
    assert _max_diff(mixed[1], guided[1]) <= 1e-4
    assert _max_diff(guided[0], unguided[0]) > 1e-3  # the property is not vacuous


@pytest.mark.parametrize("scheduler_cls", [DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, LMSDiscreteScheduler])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predict_x0_matches_the_schedulers_own_pred_original_sample(tiny_model, scheduler_cls, prediction_type):
    scheduler = scheduler_cls.from_config(tiny_model.scheduler.config, prediction_type=prediction_type)
    scheduler.set_timesteps(10)
    torch.manual_seed(0)
    sample = torch.randn(2, 4, 8, 8) * scheduler.init_noise_sigma
    for index in (0, 4, 9):
        t = scheduler.timesteps[index]
        if hasattr(scheduler, "_step_index"):
            scheduler._step_index = index  # jump the stateful scheduler to this step
        output = torch.randn(2, 4, 8, 8)
        scheduler.scale_model_input(sample, t)  # Karras schedulers insist on it before step
        ours = predict_x0(scheduler, output, t, sample)
        kwargs = {"generator": torch.Generator().manual_seed(0)} if scheduler_cls is EulerAncestralDiscreteScheduler else {}
        theirs = scheduler.step(output, t, sample, **kwargs).pred_original_sample
        assert _max_diff(ours, theirs) <= 1e-4 * max(1.0, theirs.abs().max().item())


def test_predict_x0_inverts_the_forward_process_for_v_prediction(tiny_model):
    """Independent of any scheduler code: build x_t and v from a known x0 and recover it."""
    scheduler = make_scheduler("ddim", tiny_model.scheduler.config)
    torch.manual_seed(1)
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = 600
    a = scheduler.alphas_cumprod[t]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert _max_diff(predict_x0(scheduler, v, t, x_t, "v_prediction"), x0) <= 1e-4
    assert _max_diff(predict_x0(scheduler, eps, t, x_t, "epsilon"), x0) <= 1e-4
    # reading v as epsilon (what the reference inversion code does) is badly wrong
    assert _max_diff(predict_x0(scheduler, v, t, x_t, "epsilon"), x0) > 0.1
