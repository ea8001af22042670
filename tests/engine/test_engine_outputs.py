"""PNG parameters in the layout Stable Diffusion front ends read, and written atomically."""

from __future__ import annotations

import PIL.Image
import pytest

from charforge import __version__
from charforge.engine import GenerationParams, format_parameters, parse_parameters, read_parameters, save_png
from charforge.errors import InvalidInput

PARAMS = GenerationParams(
    prompt="portrait of a girl, (smiling:1.4), red hair",
    negative_prompt="blurry, lowres",
    seed=1234,
    steps=25,
    guidance=7.5,
    scheduler="dpm++",
    width=512,
    height=768,
    model_hash="0123456789abcdef" * 4,
)


def test_parameters_text_has_the_a1111_layout():
    text = format_parameters(PARAMS)
    assert text.split("\n") == [
        "portrait of a girl, (smiling:1.4), red hair",
        "Negative prompt: blurry, lowres",
        "Steps: 25, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 1234, Size: 512x768, Model hash: 0123456789, "
        f"Version: charforge {__version__}",
    ]


def test_parameters_round_trip_including_awkward_prompts():
    params = GenerationParams(
        prompt='a "quoted" prompt\nover two lines',
        negative_prompt="",
        seed=7,
        steps=3,
        guidance=1.0,
        scheduler="euler-a",
        width=32,
        height=32,
        model_hash="f" * 64,
        mode="img2img",
        strength=0.5,
    )
    parsed = parse_parameters(format_parameters(params))
    assert parsed["prompt"] == params.prompt and parsed["negative_prompt"] == ""
    assert parsed["Sampler"] == "Euler a" and parsed["Denoising strength"] == "0.5" and parsed["Seed"] == "7"


def test_save_png_stores_the_chunk_and_leaves_no_temp_files(tmp_path):
    out = save_png(PIL.Image.new("RGB", (8, 8), "red"), tmp_path / "x.png", PARAMS)
    assert read_parameters(out) == format_parameters(PARAMS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
    with pytest.raises(InvalidInput, match="must be a .png"):
        save_png(PIL.Image.new("RGB", (8, 8)), tmp_path / "x.jpg")
