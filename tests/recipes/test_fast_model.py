"""The shipped few-step student (charforge/models/portrait-mini-fast, never retrained here): a small
safetensors-only folder with the teacher's text encoder and a tiny autoencoder distilled from the
teacher's VAE, sampled by `generate --fast` in 4 LCM steps of one UNet call each."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from charforge.models import default_model_path, fast_model_path, hash_files

FAST = fast_model_path()
shipped = pytest.mark.skipif(not (FAST / "model_index.json").is_file(), reason="portrait-mini-fast not exported yet")
PROMPT = "portrait of a girl with short blue hair, green eyes, fair skin, red outfit, pink background, very smiling happily"


def test_fast_refuses_another_model_or_scheduler(cli, tmp_path):
    code, _, err = cli("generate", "--prompt", "a girl", "--fast", "--model", "x", "--out", tmp_path / "a.png")
    assert code == 2 and err.count("\n") <= 1 and "--fast" in err
    code, _, err = cli("generate", "--prompt", "a girl", "--fast", "--scheduler", "ddim", "--out", tmp_path / "a.png")
    assert code == 2 and "lcm" in err


@shipped
def test_shipped_student_is_small_safetensors_and_shares_the_teachers_text_encoder():
    files = [p for p in FAST.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(p.stat().st_size for p in files if p.suffix == ".safetensors") <= 30 * 2**20
    # distilled from the shipped teacher: its prompt encoding is the teacher's, byte for byte
    for part in ("text_encoder", "tokenizer"):
        ours = sorted(p for p in (FAST / part).iterdir() if p.is_file())
        theirs = sorted(p for p in (default_model_path() / part).iterdir() if p.is_file())
        assert ours and hash_files(ours, FAST / part) == hash_files(theirs, default_model_path() / part)
    assert (FAST / "README.md").is_file()


@shipped
@pytest.mark.slow
def test_shipped_students_tiny_decoder_draws_the_teachers_latents_as_the_teachers_vae_does():
    """Same latent space: on held-out renders the tiny decoder's picture of the teacher's latent is at
    least 25 dB PSNR from the teacher's own decoding of it (27.06 dB on 200 when it was shipped)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from charforge.engine.images import psnr, unit_pixels
    from charforge.recipes.portrait_mini.classifier import render_set

    kl = AutoencoderKL.from_pretrained(str(default_model_path() / "vae")).eval()
    tiny = AutoencoderTiny.from_pretrained(str(FAST / "vae")).eval()
    images, _ = render_set(777, 24, held_out=True)
    with torch.no_grad():
        latent = kl.encode(images).latent_dist.mean
        ours = tiny.decode(latent * kl.config.scaling_factor).sample
        theirs = kl.decode(latent).sample
    assert psnr(unit_pixels(ours), unit_pixels(theirs)) >= 25.0


@shipped
@pytest.mark.slow
def test_shipped_student_generates_in_four_single_pass_steps(cli, tmp_path):
    from diffusers import LCMScheduler

    from charforge.engine import load_model, txt2img

    model = load_model("charforge-mini-fast", device="cpu", dtype=torch.float32)
    assert model.embeds_guidance and isinstance(model.scheduler, LCMScheduler)
    calls = []
    handle = model.unet.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    try:
        a = txt2img(model, PROMPT, seed=3, steps=4, guidance=5.0, scheduler="lcm")
        b = txt2img(model, PROMPT, seed=3, steps=4, guidance=5.0, scheduler="lcm")
    finally:
        handle.remove()
    assert calls == [1] * 8
    assert a.pixels.shape == (1, 3, 64, 64) and torch.equal(a.pixels, b.pixels)
    # the picture has content (not a flat or saturated field): the face and hair differ from the background
    assert float(a.pixels.std()) > 0.1
    out = tmp_path / "fast.png"
    code, stdout, err = cli("generate", "--prompt", PROMPT, "--fast", "--seed", 3, "--out", out)
    assert code == 0, err
    assert np.array_equal(np.asarray(PIL.Image.open(out)), np.asarray(a.images[0]))
