"""The generic trainer (on tiny components) and the shipped charforge-mini folder (never retrained here)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers.training import ToySource, tiny_config, tiny_spec

from charforge.engine.images import psnr, unit_pixels
from charforge.errors import InvalidInput
from charforge.recipes.portrait_mini.evaluate import SHIPPED, load_pipeline
from charforge.recipes.portrait_mini.tokenizer import build_tokenizer
from charforge.recipes.training import LatentDiffusionTrainer
from charforge.recipes.training.checkpoint import load_checkpoint
from charforge.recipes.training.runs import grow_run, load_run

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The target for the VAE round trip on held-out renders (the shipped VAE measures 31.2 dB).
VAE_PSNR_FLOOR = 28.0


@pytest.mark.slow
def test_training_resumes_after_a_crash_and_exports_a_loadable_ema_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    run = tmp_path / "run"
    centre = [[3.0 if 2 <= r < 6 and 2 <= c < 6 else 1.0 for c in range(8)] for r in range(8)]
    # the first 16 reads time the latent encoding (set aside from the budget); training reads 4 a step
    crashing = LatentDiffusionTrainer(tiny_spec(tmp_path), ToySource(fail_after=16 + 10),
                                      tiny_config(checkpoint_minutes=0.0, loss_weight=centre), run)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.run()
    saved = json.loads((run / "checkpoint" / "state.json").read_text())
    assert saved["phase"] == "vae" and saved["step"] == 2  # crashed inside step 3 (4 images a step)

    resumed = load_run(run, ToySource())
    assert resumed.step == saved["step"]
    for name, value in crashing.vae.state_dict().items():
        assert torch.equal(resumed.vae.state_dict()[name], value)  # step 3 died before its update
    resumed.run()
    assert resumed.phase == "done"

    folder = resumed.export(tmp_path / "model")
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    assert pipe.safety_checker is None
    shadow = resumed.ema_unet.shadow_params
    exported = list(pipe.unet.parameters())
    assert all(torch.equal(a, b) for a, b in zip(shadow, exported))
    assert not all(torch.equal(a, b) for a, b in zip(resumed.unet.parameters(), exported))
    assert 0.05 < pipe.vae.config.scaling_factor < 100
    images = pipe("red hair", num_inference_steps=2, guidance_scale=3.0, height=16, width=16, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 16, 16, 3)


@pytest.mark.slow
def test_decoder_phase_keeps_the_latent_space_and_a_finished_run_reloads_identically(tmp_path):
    from safetensors.torch import load_file

    trainer = LatentDiffusionTrainer(tiny_spec(tmp_path), ToySource(), tiny_config(), tmp_path / "r")
    trainer.run()
    assert trainer.phase == "done"
    cached = load_file(str(tmp_path / "r" / "latents.safetensors"))
    with torch.no_grad():
        now = trainer.vae.encode(ToySource().images).latent_dist.mean
    assert torch.allclose(now, cached["mean"].float(), atol=2e-2)

    again = load_run(tmp_path / "r", ToySource())
    for a, b in ((trainer.unet, again.unet), (trainer.text_encoder, again.text_encoder), (trainer.vae, again.vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert again.vae.config.scaling_factor == trainer.vae.config.scaling_factor

    # resuming a finished run with a larger budget trains the UNet further (and nothing else)
    again.cfg.max_steps = 5
    before = {k: v.clone() for k, v in again.unet.state_dict().items()}
    encoder = {k: v.clone() for k, v in again.vae.encoder.state_dict().items()}
    again.run()
    assert again.phase == "done" and again.finished["unet"]["step"] == 5
    assert any(not torch.equal(before[k], v) for k, v in again.unet.state_dict().items())
    assert all(torch.equal(encoder[k], v) for k, v in again.vae.encoder.state_dict().items())


@pytest.mark.slow
def test_a_grown_run_starts_as_the_old_model_and_trains_its_new_modules(tmp_path):
    old = LatentDiffusionTrainer(tiny_spec(tmp_path), ToySource(), tiny_config(decoder_minutes=0.0), tmp_path / "old")
    old.run()
    grown_config = {**old.spec.unet_config, "addition_embed_type": "text", "addition_embed_type_num_heads": 2}
    grown = grow_run(tmp_path / "old", tmp_path / "new", grown_config, ToySource(), zero=("add_embedding.norm2.",))
    assert grown.phase == "unet" and grown.step == 0
    before, after = old.pipeline(), grown.pipeline()  # EMA weights, as exported
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 700]), torch.randn(2, 77, 16)
    with torch.no_grad():
        assert torch.allclose(before.unet(x, t, text).sample, after.unet(x, t, text).sample, atol=1e-6)
    for name, value in old.vae.state_dict().items():
        assert torch.equal(grown.vae.state_dict()[name], value)
    resumed = load_run(tmp_path / "new", ToySource())
    resumed.cfg.max_steps = 2
    resumed.run()
    norm = dict(resumed.unet.named_parameters())["add_embedding.norm2.weight"]
    assert norm.abs().sum() > 0  # the zero-initialised pathway receives gradient and starts to learn
    with pytest.raises(InvalidInput, match="already holds"):
        grow_run(tmp_path / "old", tmp_path / "new", grown_config, ToySource())


def test_a_loss_weight_map_of_the_wrong_shape_is_named(tmp_path):
    from charforge.errors import InvalidInput

    trainer = LatentDiffusionTrainer(tiny_spec(tmp_path), ToySource(),
                                     tiny_config(vae_fraction=0.0, loss_weight=[[1.0] * 4] * 4), tmp_path / "r")
    with pytest.raises(InvalidInput, match="loss_weight"):
        trainer.run()


def test_portrait_face_weight_covers_the_rendered_face():
    import numpy as np

    from charforge.recipes.portrait_mini.population import sample_portraits
    from charforge.recipes.portrait_mini.recipe import face_loss_weight
    from charforge.recipes.portrait_mini.render import render

    weight = np.array(face_loss_weight(16))
    face = np.mean([render(p)[1]["face"] for p in sample_portraits(0, 8, held_out=None)], axis=0)
    face16 = face.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    assert (weight[face16 > 0.5] > 1).all()  # every face cell is emphasised
    assert (weight > 1).sum() <= 2 * (face16 > 0.5).sum()  # with a margin (fringe, chin), not the picture


def test_train_cli_refuses_to_overwrite_a_run_and_bad_minutes(tmp_path, cli):
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "run", "--minutes", "1")
    assert code == 2 and "--resume" in err
    code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "new", "--minutes", "0")
    assert code == 2 and "minutes" in err
    assert not (tmp_path / "new").exists()
    code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "ft", "--init-from", tmp_path)
    assert code == 2 and "model_index.json" in err
    code, _, err = cli("eval", "portrait-mini", "--model", tmp_path, "--samples", "1")
    assert code == 2 and "model_index.json" in err
    code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "ft", "--face-mix", "0,0,1,0")
    assert code == 2 and "--init-from" in err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text("{}")
    code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "ft", "--init-from", tmp_path / "m",
                       "--face-mix", "1,2")  # fmt: skip
    assert code == 2 and "four non-negative shares" in err and len(err.strip().splitlines()) == 1
    for bad in ("trust=0", "hope=2", "trust"):
        code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "ft", "--init-from", tmp_path / "m",
                           "--emphasis", bad)  # fmt: skip
        assert code == 2 and "--emphasis" in err and len(err.strip().splitlines()) == 1
    for extra in ((), ("--init-from", tmp_path / "m")):  # a locality term is a new decoder fine-tune's
        code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "ft", *extra, "--locality", "2")
        assert code == 2 and "--locality" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("train", "portrait-mini", "--out", tmp_path / "ft", "--init-from", tmp_path / "m",
                       "--decoder-only", "--locality", "-1")  # fmt: skip
    assert code == 2 and "--locality" in err
    assert not (tmp_path / "ft").exists()


# --- the shipped model ---------------------------------------------------------------------------

shipped = pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(), reason="portrait-mini not exported yet")


@shipped
def test_shipped_folder_is_small_safetensors_only_and_loads_offline():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files if p.suffix == ".safetensors") <= 30 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    pipe = StableDiffusionPipeline.from_pretrained(str(SHIPPED))
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.scheduler.config.prediction_type == "epsilon"
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64


@shipped
@pytest.mark.slow
def test_shipped_model_generates_deterministically_at_64px():
    pipe = load_pipeline()
    kw = dict(num_inference_steps=4, guidance_scale=5.0, output_type="pt")
    a = pipe("portrait of a girl with short blue hair, smiling happily", generator=torch.Generator().manual_seed(3), **kw).images
    b = pipe("portrait of a girl with short blue hair, smiling happily", generator=torch.Generator().manual_seed(3), **kw).images
    c = pipe("portrait of a girl with short blue hair, smiling happily", generator=torch.Generator().manual_seed(4), **kw).images
    assert a.shape == (1, 3, 64, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)


@shipped
@pytest.mark.slow
def test_shipped_vae_round_trip_on_held_out_renders():
    from charforge.recipes.portrait_mini.classifier import render_set

    pipe = load_pipeline()
    images, _ = render_set(777, 24, held_out=True)
    with torch.no_grad():
        recon = pipe.vae.decode(pipe.vae.encode(images).latent_dist.mode()).sample
    assert psnr(unit_pixels(recon), unit_pixels(images)) >= VAE_PSNR_FLOOR


@shipped
@pytest.mark.slow
def test_shipped_vae_keeps_every_expression_it_is_given():
    """A face the decoder cannot draw, no UNet can: the round trip of a full-intensity render must read,
    by the evaluation's judge, at least 80% as strongly as the render (a decoder once read trust at 27%)."""
    from charforge.emotion.table import BASIS
    from charforge.recipes.portrait_mini import render
    from charforge.recipes.portrait_mini.dataset import image_to_tensor
    from charforge.recipes.portrait_mini.judge import load_judge
    from charforge.recipes.portrait_mini.population import sample_portraits

    vae, judge = load_pipeline().vae, load_judge()
    people = list(sample_portraits(779, 6, held_out=True))
    for k, emotion in enumerate(BASIS):
        renders = torch.stack([image_to_tensor(render.render(p.with_state({emotion: 1.0}))[0]) for p in people])
        with torch.no_grad():
            trip = vae.decode(vae.encode(renders).latent_dist.mean).sample.clamp(-1, 1)
            trip = ((trip + 1) * 127.5).round() / 127.5 - 1  # as a stored picture is: 8-bit
        drawn, kept = judge.intensities(renders)[:, k].mean(), judge.intensities(trip)[:, k].mean()
        assert kept >= 0.8 * drawn, f"{emotion}: round trip reads {kept:.2f}, the render {drawn:.2f}"


@shipped
@pytest.mark.slow
def test_shipped_classifier_reads_held_out_renders():
    from charforge.recipes.portrait_mini.classifier import accuracy, load_classifier, render_set

    images, portraits = render_set(778, 120, held_out=True)
    acc = accuracy(load_classifier(), images, portraits)
    assert acc["hair_colour"] >= 0.97 and min(acc.values()) >= 0.9


@pytest.mark.slow
def test_a_warm_start_keeps_the_old_model_and_grows_the_vocabulary(tmp_path):
    """init_from_model: old token ids, embeddings, UNet and VAE carried over; new words get new rows."""
    from transformers import CLIPTextModel

    from charforge.recipes.portrait_mini.recipe import finetune_portrait_mini, init_from_model

    spec = tiny_spec(tmp_path)  # its tokenizer knows only the renderer's words
    old_words = ["portrait", "of", "a", "girl", "with", "red", "hair", ",", "looking", "calm", "smiling", "happily"]
    spec.tokenizer = build_tokenizer(tmp_path / "oldtok", words=old_words)
    spec.text_config["vocab_size"] = len(spec.tokenizer)
    spec.vae_config.update(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                           block_out_channels=(8, 8, 8))  # 64x64 renders -> 16x16 latents, like the real model
    old = LatentDiffusionTrainer(spec, ToySource(), tiny_config(), tmp_path / "old")
    old.export(tmp_path / "old" / "model")
    trainer = init_from_model(tmp_path / "old" / "model", tmp_path / "ft", minutes=1.0, dataset_size=6, threads=1,
                              face_mix=(0, 0, 1, 0))  # fmt: skip
    assert all(len(p.state()) == 2 for p in trainer.source.portraits)
    # a resumed run draws the same portraits: the mix is kept with the run
    assert load_checkpoint(tmp_path / "ft" / "checkpoint")[1]["config"]["extra"]["face_mix"] == [0, 0, 1, 0]
    new_tok = trainer.spec.tokenizer
    assert len(new_tok) > len(spec.tokenizer)
    prompt = "portrait of a girl with red hair, looking calm"
    assert new_tok(prompt).input_ids == spec.tokenizer(prompt).input_ids
    assert len(new_tok("extremely gazing trustingly", add_special_tokens=False).input_ids) == 3
    before = CLIPTextModel.from_pretrained(str(tmp_path / "old" / "model" / "text_encoder"))
    ids = torch.tensor([spec.tokenizer(prompt, padding="max_length", max_length=77).input_ids])
    with torch.no_grad():
        assert torch.allclose(trainer.text_encoder(ids)[0], before(ids)[0], atol=1e-6)
    for a, b in zip(trainer.vae.state_dict().values(), old.vae.state_dict().values()):
        assert torch.equal(a, b)
    assert trainer.vae.config.scaling_factor == old.vae.config.scaling_factor
    with pytest.raises(InvalidInput, match="already holds"):
        init_from_model(tmp_path / "old" / "model", tmp_path / "ft", minutes=1.0, dataset_size=6)
    trainer.cfg.max_steps = 2
    trainer.run()
    exported = trainer.export(tmp_path / "ft" / "model")
    assert json.loads((exported / "text_encoder" / "config.json").read_text())["vocab_size"] == len(new_tok)
    # the fine-tune does not touch the VAE
    for a, b in zip(trainer.vae.state_dict().values(), old.vae.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(InvalidInput, match="init-from"):
        finetune_portrait_mini(tmp_path / "other", None, minutes=1.0)


@pytest.mark.slow
def test_a_decoder_only_fine_tune_keeps_the_latent_space_and_the_unet(tmp_path):
    """Only the decoder learns: the encoder (hence every stored latent and inversion) and UNet stay exact."""
    from charforge.recipes.portrait_mini.recipe import init_from_model

    spec = tiny_spec(tmp_path)
    spec.vae_config.update(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                           block_out_channels=(8, 8, 8))  # fmt: skip
    old = LatentDiffusionTrainer(spec, ToySource(), tiny_config(), tmp_path / "old")
    old.export(tmp_path / "old" / "model")
    trainer = init_from_model(tmp_path / "old" / "model", tmp_path / "dec", minutes=1.0, dataset_size=6, threads=1,
                              decoder_only=True, lr=1e-2)  # fmt: skip
    assert trainer.phase == "decoder" and len(trainer.cfg.decoder_weight) == 64
    trainer.cfg.max_steps = 3
    trainer.run()
    assert trainer.phase == "done"
    assert load_checkpoint(tmp_path / "dec" / "checkpoint")[1]["config"]["extra"]["decoder_only"] is True
    new, before = trainer.vae.state_dict(), old.vae.state_dict()
    moved = {k for k in new if not torch.equal(new[k], before[k])}
    assert moved and all(k.startswith(("decoder.", "post_quant_conv.")) for k in moved)
    for a, b in zip(trainer.unet.state_dict().values(), old.unet.state_dict().values()):
        assert torch.equal(a, b)
