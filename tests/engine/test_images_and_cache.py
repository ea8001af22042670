"""The one picture path (VaeImageProcessor) and the one model cache."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from charforge.engine import cache, decode_pixels, prepare_image, psnr, to_pil, to_uint8, txt2img
from charforge.errors import InvalidInput


def test_pictures_match_the_diffusers_pipeline(tiny_model_dir, tiny_model):
    """txt2img's decoded pixels and uint8 pictures are what diffusers' own pipeline returns."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator("cpu").manual_seed(5)
    expected = pipe("a girl", num_inference_steps=3, generator=generator, guidance_scale=7.5).images[0]
    ours = txt2img(tiny_model, "a girl", seed=5, steps=3, scheduler="ddim")
    assert np.array_equal(to_uint8(ours.pixels)[0], np.asarray(expected))


def test_round_trip_and_quantisation(tiny_model):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels = prepare_image(tiny_model, PIL.Image.fromarray(rgb))
    assert pixels.shape == (1, 3, 32, 32) and -1 <= pixels.min() and pixels.max() <= 1
    unit = (pixels + 1) / 2
    assert np.array_equal(to_uint8(unit)[0], rgb)  # [-1, 1] -> [0, 1] -> uint8 gives the picture back
    assert to_pil(unit)[0].tobytes() == rgb.tobytes()
    decoded = decode_pixels(tiny_model, torch.randn(2, 4, 16, 16))
    assert decoded.shape == (2, 3, 32, 32) and decoded.min() >= 0 and decoded.max() <= 1
    with pytest.raises(InvalidInput, match="one image"):
        prepare_image(tiny_model, [PIL.Image.fromarray(rgb)] * 2)


def test_psnr():
    a = torch.full((1, 3, 4, 4), 0.5)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB


@pytest.fixture
def fake_loads(monkeypatch):
    loads: list[str] = []

    def load(ref):
        loads.append(str(ref))
        return object()

    monkeypatch.setattr(cache, "_LOADED", type(cache._LOADED)())
    monkeypatch.setattr(cache, "load_model", load)
    return loads


def _model_folder(path, weights: bytes):
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text("{}")
    (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    return path


def test_one_load_per_model_until_its_weights_change(tmp_path, fake_loads):
    portrait = _model_folder(tmp_path / "portrait", b"a")
    music = _model_folder(tmp_path / "music", b"b")
    first = cache.cached_model(portrait)
    assert cache.cached_model(str(portrait)) is first
    tune = cache.cached_model(music)
    assert cache.cached_model(portrait) is first and cache.cached_model(music) is tune  # both stay loaded
    assert len(fake_loads) == 2
    (portrait / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"retrained")
    assert cache.cached_model(portrait) is not first  # new weights on disk: loaded again
    assert len(cache._LOADED) == 2  # the stale copy went
    third = _model_folder(tmp_path / "third", b"c")
    cache.cached_model(third)
    assert len(cache._LOADED) == cache.MAX_MODELS and len(fake_loads) == 4
    cache.cached_model(portrait)  # the most recently used survived the third model
    assert len(fake_loads) == 4
