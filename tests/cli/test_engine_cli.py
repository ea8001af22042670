"""`charforge generate`: a PNG that carries its parameters, and one clear line + exit 2 on bad input."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from charforge.engine import parse_parameters, read_parameters, txt2img


@pytest.fixture
def inputs(tmp_path):
    rgb = (np.indices((32, 32)).sum(0) * 4 % 256).astype(np.uint8)
    PIL.Image.fromarray(np.stack([rgb, rgb[::-1], rgb.T], -1)).save(tmp_path / "in.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    PIL.Image.fromarray(mask).save(tmp_path / "mask.png")
    PIL.Image.fromarray(mask[:16, :16]).save(tmp_path / "small-mask.png")
    (tmp_path / "not-an-image.png").write_text("hello")
    return tmp_path


@pytest.mark.slow
def test_generate_writes_the_same_image_as_the_api_with_its_parameters(cli, tiny_model_dir, tiny_model, tmp_path):
    out = tmp_path / "girl.png"
    code, stdout, err = cli(
        "generate", "--prompt", "a girl with red hair, smiling", "--negative", "blue", "--model", tiny_model_dir,
        "--seed", 7, "--steps", 3, "--guidance", 5, "--scheduler", "euler-a", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert stdout.strip() == str(out)
    expected = txt2img(tiny_model, "a girl with red hair, smiling", negative="blue", seed=7, steps=3, guidance=5,
                       scheduler="euler-a").images[0]  # fmt: skip
    assert np.array_equal(np.asarray(PIL.Image.open(out)), np.asarray(expected))
    params = parse_parameters(read_parameters(out))
    assert params["prompt"] == "a girl with red hair, smiling"
    assert params["negative_prompt"] == "blue"
    assert (params["Seed"], params["Steps"], params["Sampler"], params["CFG scale"]) == ("7", "3", "Euler a", "5")
    assert params["Size"] == "32x32"
    assert params["Model hash"] == tiny_model.short_hash
    assert params["Version"].startswith("charforge ")


def test_generate_img2img_and_inpaint(cli, tiny_model_dir, inputs):
    for extra, name in (([], "img2img.png"), (["--mask", inputs / "mask.png"], "inpaint.png")):
        out = inputs / name
        code, _, err = cli(
            "generate", "--prompt", "a cat", "--model", tiny_model_dir, "--steps", 2, "--image", inputs / "in.png",
            "--out", out, *extra,
        )  # fmt: skip
        assert code == 0, err
        params = parse_parameters(read_parameters(out))
        assert params["Denoising strength"] == ("0.75" if not extra else "1")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--width", 33], "width 33 is not a positive multiple of 2"),
        (["--scheduler", "heun"], "unknown scheduler 'heun'"),
        (["--image", "missing.png"], "--image file not found"),
        (["--image", "not-an-image.png"], "is not a readable image"),
        (["--image", "in.png", "--mask", "small-mask.png"], "--mask is 16x16 but --image is 32x32"),
        (["--mask", "mask.png"], "--mask needs --image"),
        (["--strength", 1.5, "--image", "in.png"], "1.5 is not in (0, 1]"),
        (["--steps", 0], "--steps"),
        (["--model", "no/such/folder"], "model not found: no/such/folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tiny_model_dir, inputs, monkeypatch, args, message):
    monkeypatch.chdir(inputs)
    model = [] if "--model" in args else ["--model", tiny_model_dir]
    code, stdout, err = cli("generate", "--prompt", "a cat", "--steps", 2, *model, *args, "--out", inputs / "o.png")
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (inputs / "o.png").exists()


def test_output_must_be_a_png_in_an_existing_folder(cli, tiny_model_dir, tmp_path):
    for out, message in ((tmp_path / "x.jpg", "must end in .png"), (tmp_path / "nope" / "x.png", "does not exist")):
        code, _, err = cli("generate", "--prompt", "a cat", "--model", tiny_model_dir, "--out", out)
        assert code == 2 and message in err
