"""portrait-mini-fast's recipe (latent consistency distillation) on tiny random components: the student
starts as the teacher, trains its loss down, takes the guidance input exactly as the sampling loop
builds it, and exports a folder the engine samples in 4 steps of one UNet call each."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_IMAGE_SIZE
from diffusers import LCMScheduler

from charforge.engine import load_model, txt2img
from charforge.engine.loop import guidance_embedding
from charforge.recipes.portrait_mini.distill import (
    ConsistencyDistiller,
    DistillConfig,
    boundary_scalings,
    guidance_condition,
    student_from_teacher,
)


def _source(n: int = 4) -> list[tuple[torch.Tensor, str]]:
    gen = torch.Generator().manual_seed(3)
    colours = ["red", "blue", "green", "black"]
    return [(torch.rand(3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=gen) * 2 - 1, f"a girl with {colours[i % 4]} hair")
            for i in range(n)]  # fmt: skip


def _distiller(tiny_model_dir, run_dir, **kw) -> ConsistencyDistiller:
    cfg = DistillConfig(dataset_size=4, batch=2, cond_dim=32, threads=1, **kw)
    distiller = ConsistencyDistiller(tiny_model_dir, run_dir, cfg, source=_source())
    distiller.prepare()
    return distiller


def test_student_starts_as_the_teacher_for_every_guidance(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    teacher = UNet2DConditionModel.from_pretrained(str(tiny_model_dir / "unet")).eval()
    student = student_from_teacher(teacher, 32).eval()
    x, hidden = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)
    t = torch.tensor([999, 400])
    with torch.no_grad():
        ref = teacher(x, t, hidden).sample
        for w in (0.0, 4.0):
            out = student(x, t, hidden, timestep_cond=guidance_condition(torch.full((2,), w), 32)).sample
            assert (out - ref).abs().max() <= 1e-5


def test_guidance_input_is_the_loops(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir, device="cpu", dtype=torch.float32)
    model.unet.register_to_config(time_cond_proj_dim=32)
    ours = guidance_condition(torch.full((3,), 4.0), 32)  # w = scale - 1
    assert torch.equal(ours, guidance_embedding(model, 5.0, 3))


def test_boundary_scalings_are_lcm_schedulers():
    scheduler = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.tensor([0, 19, 999])
    c_skip, c_out = boundary_scalings(scheduler, t)
    assert float(c_skip[0]) == pytest.approx(1.0) and float(c_out[0]) == pytest.approx(0.0)
    for i, x in enumerate(t):
        skip, out = scheduler.get_scalings_for_boundary_condition_discrete(int(x))
        assert float(c_skip[i]) == pytest.approx(float(skip)) and float(c_out[i]) == pytest.approx(float(out))


@pytest.mark.slow
def test_distillation_lowers_the_loss_on_a_fixed_batch(tiny_model_dir, tmp_path):
    distiller = _distiller(tiny_model_dir, tmp_path / "run", lr=1e-3, target_decay=0.5)
    draws = distiller.draw()
    with torch.no_grad():
        before = float(distiller.loss(*draws))
    for _ in range(4):
        distiller.train_step(0.0, draws)
        distiller.step += 1
    with torch.no_grad():
        after = float(distiller.loss(*draws))
    assert after < 0.8 * before


@pytest.mark.slow
def test_resume_and_export_sample_in_four_single_pass_steps(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    first = _distiller(tiny_model_dir, run, max_steps=1)
    first.run()
    again = _distiller(tiny_model_dir, run)
    assert again.resume() and again.step == 1
    for a, b in zip(again.student.parameters(), first.student.parameters()):
        assert torch.equal(a, b)
    folder = again.export(tmp_path / "student")
    model = load_model(folder, device="cpu", dtype=torch.float32)
    assert model.embeds_guidance and isinstance(model.scheduler, LCMScheduler)
    calls = []
    handle = model.unet.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    try:
        result = txt2img(model, "a girl with red hair", seed=1, steps=4, guidance=5.0, scheduler="lcm")
    finally:
        handle.remove()
    assert calls == [1, 1, 1, 1]
    assert torch.isfinite(result.pixels).all()
