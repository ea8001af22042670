"""The tiny autoencoder distilled from a KL VAE (charforge.recipes.portrait_mini.tiny_vae), on tiny random
components: training brings its pictures towards the KL decoder's, a run resumes exactly, and a student
exported with it is a diffusers folder whose VAE is the `AutoencoderTiny`, sampled in single-pass steps."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_IMAGE_SIZE
from diffusers import AutoencoderTiny, LCMScheduler

from charforge.engine import load_model, txt2img
from charforge.recipes.portrait_mini.distill import ConsistencyDistiller, DistillConfig
from charforge.recipes.portrait_mini.tiny_vae import TinyVaeDistiller
from charforge.recipes.training.budget import Budget

# the tiny KL VAE downsamples once: two levels
CONFIG = {
    "encoder_block_out_channels": [8, 8],
    "decoder_block_out_channels": [8, 8],
    "num_encoder_blocks": [1, 1],
    "num_decoder_blocks": [1, 0],
    "latent_channels": 4,
    "scaling_factor": 1.0,
}


def _source(n: int = 8) -> list[tuple[torch.Tensor, str]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.rand(3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=gen) * 2 - 1, "") for _ in range(n)]


def _distiller(tiny_model_dir, run_dir) -> TinyVaeDistiller:
    return TinyVaeDistiller(tiny_model_dir / "vae", run_dir, source=_source(), config=CONFIG, batch=4)


@pytest.mark.slow
def test_training_brings_the_tiny_decoder_towards_the_kl_decoder(tiny_model_dir, tmp_path):
    distiller = _distiller(tiny_model_dir, tmp_path / "run")
    distiller.prepare()
    before = distiller.decoder_error()
    for _ in range(12):
        distiller.train_step(3e-3)
    assert distiller.decoder_error() < 0.5 * before


def test_a_face_weight_counts_face_pixels_more_and_one_counts_all_alike(tiny_model_dir, tmp_path):
    from charforge.recipes.portrait_mini import render
    from charforge.recipes.portrait_mini.population import sample_portraits

    weighted = TinyVaeDistiller(tiny_model_dir / "vae", tmp_path / "a", source=_source(), config=CONFIG, face_weight=4.0)
    weighted.prepare()
    face = render.render(next(iter(sample_portraits(0, 1))), size=TINY_IMAGE_SIZE)[1]["face"]
    w = weighted.weight
    assert w.shape == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) and abs(float(w.mean()) - 1.0) < 1e-6
    assert float(w[torch.from_numpy(face)].mean()) > 2 * float(w[~torch.from_numpy(face)].mean())
    uniform = _distiller(tiny_model_dir, tmp_path / "b")
    uniform.prepare()
    assert torch.equal(uniform.weight, torch.ones_like(uniform.weight))


def test_a_run_resumes_exactly_and_exports_a_diffusers_tiny_autoencoder(tiny_model_dir, tmp_path):
    first = _distiller(tiny_model_dir, tmp_path / "run")
    first.run(Budget.minutes(5), max_steps=3)
    again = _distiller(tiny_model_dir, tmp_path / "run")
    assert again.resume() and again.step == 3
    for a, b in zip(again.tiny.parameters(), first.tiny.parameters()):
        assert torch.equal(a, b)
    folder = again.export(tmp_path / "vae")
    loaded = AutoencoderTiny.from_pretrained(str(folder))
    assert loaded.config.scaling_factor == 1.0  # it works in the UNet's (scaled) latent space
    latent = torch.randn(1, 4, TINY_IMAGE_SIZE // 2, TINY_IMAGE_SIZE // 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(latent).sample, again.tiny.decode(latent).sample)


def test_a_student_exported_with_the_tiny_vae_samples_through_it(tiny_model_dir, tmp_path):
    vae = _distiller(tiny_model_dir, tmp_path / "vae-run").export(tmp_path / "vae")
    cfg = DistillConfig(dataset_size=4, batch=2, cond_dim=32, threads=1)
    distiller = ConsistencyDistiller(tiny_model_dir, tmp_path / "run", cfg, source=_source(4))
    folder = distiller.export(tmp_path / "student", vae=vae)
    assert json.loads((folder / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderTiny"]
    model = load_model(folder, device="cpu", dtype=torch.float32)
    assert isinstance(model.vae, AutoencoderTiny) and isinstance(model.scheduler, LCMScheduler)
    decoded = []
    handle = model.vae.decoder.register_forward_hook(lambda _m, _a, out: decoded.append(out.shape))
    try:
        result = txt2img(model, "a girl with red hair", seed=1, steps=4, guidance=5.0, scheduler="lcm")
    finally:
        handle.remove()
    assert decoded == [result.pixels.shape] and torch.isfinite(result.pixels).all()
