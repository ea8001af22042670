"""`charforge invert / edit / attention` on the tiny model: outputs, PSNR line, one-line errors."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from charforge.engine.edit import reconstruct
from charforge.engine.images import psnr
from charforge.engine.inversion import InversionResult

PROMPT = "a portrait of a smiling girl with red hair"


@pytest.fixture
def picture(tmp_path):
    rgb = (np.indices((32, 32)).sum(0) * 4 % 256).astype(np.uint8)
    path = tmp_path / "in.png"
    PIL.Image.fromarray(np.stack([rgb, rgb[::-1], rgb.T], -1)).save(path)
    return path


@pytest.mark.slow
def test_invert_writes_inversion_and_reconstruction_and_prints_psnr(cli, tiny_model_dir, tiny_model, picture, tmp_path):
    out = tmp_path / "inv"
    code, stdout, err = cli("invert", picture, "--prompt", PROMPT, "--steps", 3, "--model", tiny_model_dir, "--out", out)
    assert code == 0, err
    inversion = InversionResult.from_pretrained(out)
    assert (inversion.method, inversion.steps, inversion.guidance) == ("direct", 3, 7.5)
    written = np.asarray(PIL.Image.open(out / "reconstruction.png"), dtype=np.float32) / 255
    expected = reconstruct(tiny_model, inversion)[0].permute(1, 2, 0).numpy()
    # PNG rounding, plus float noise that the chaotic random UNet amplifies between processes
    assert np.abs(written - expected).max() <= 3 / 255
    reported = float(stdout.split("PSNR")[1].split("dB")[0])
    source = np.asarray(PIL.Image.open(picture), dtype=np.float32) / 255
    assert reported == pytest.approx(psnr(torch.from_numpy(written), torch.from_numpy(source)), abs=0.05)


@pytest.mark.slow
def test_edit_from_image_and_from_inversion_folder(cli, tiny_model_dir, picture, tmp_path):
    out = tmp_path / "edited.png"
    args = ("--prompt", PROMPT, "--to", "a portrait of a crying girl with red hair", "--steps", 3, "--model", tiny_model_dir)
    code, stdout, err = cli("edit", picture, *args, "--blend", "crying", "--reweight", "crying=1.5", "--out", out)
    assert code == 0, err
    assert PIL.Image.open(out).size == (32, 32)
    folder = tmp_path / "inv"
    assert cli("invert", picture, "--prompt", PROMPT, "--steps", 3, "--model", tiny_model_dir, "--out", folder)[0] == 0
    code, _, err = cli("edit", folder, *args, "--masactrl", "--offset-targets", "--out", tmp_path / "pose.png")
    assert code == 0, err


@pytest.mark.slow
def test_attention_map_for_a_prompt_and_an_image(cli, tiny_model_dir, picture, tmp_path):
    code, _, err = cli("attention", PROMPT, "--word", "smiling", "--steps", 2, "--model", tiny_model_dir, "--out", tmp_path / "m.png")
    assert code == 0, err
    assert PIL.Image.open(tmp_path / "m.png").size == (32, 32)
    code, _, err = cli(
        "attention", picture, "--prompt", PROMPT, "--word", "hair", "--steps", 2, "--model", tiny_model_dir, "--out", tmp_path / "i.png"
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "args, message",
    [
        (("invert", "{pic}", "--prompt", "x", "--method", "magic", "--out", "{tmp}/o"), "unknown --method 'magic'"),
        (("invert", "{tmp}/missing.png", "--prompt", "x", "--out", "{tmp}/o"), "IMAGE file not found"),
        (("edit", "{pic}", "--prompt", "a girl", "--to", "a boy", "--reweight", "boy", "--out", "{tmp}/o.png"), "WORD=FACTOR"),
        (("edit", "{pic}", "--prompt", "a girl", "--to", "a boy", "--out", "{tmp}/o.jpg"), "must end in .png"),
        (("attention", "{pic}", "--word", "girl", "--out", "{tmp}/m.png"), "needs --prompt"),
        (("attention", "a girl", "--word", "dragon", "--model", "{model}", "--out", "{tmp}/m.png"), "'dragon' does not occur"),
        (("edit", "{pic}", "--prompt", "a girl", "--to", "a boy", "--blend", "cat", "--steps", "2", "--model", "{model}",
          "--out", "{tmp}/o.png"), "blend word 'cat'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(cli, tiny_model_dir, picture, tmp_path, args, message):
    filled = [a.format(pic=picture, tmp=tmp_path, model=tiny_model_dir) for a in args]
    code, _, err = cli(*filled)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
