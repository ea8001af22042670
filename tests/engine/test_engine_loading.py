"""load_model: every kind of reference becomes the same bundle; weights are hashed; pickle is refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file, save_file

from charforge.engine import default_model_path, load_model
from charforge.engine.loading import pick_device, pick_dtype
from charforge.errors import ModelLoadError


def test_folder_bundle_describes_the_model(tiny_model, tiny_inpaint_model):
    assert (tiny_model.vae_scale_factor, tiny_model.default_size, tiny_model.latent_channels) == (2, 32, 4)
    assert tiny_model.prediction_type == "epsilon"
    assert not tiny_model.is_inpainting and tiny_inpaint_model.is_inpainting
    assert tiny_model.device == torch.device("cpu") and tiny_model.unet.dtype == torch.float32
    assert len(tiny_model.model_hash) == 64 and tiny_model.short_hash == tiny_model.model_hash[:10]
    assert tiny_model.model_hash != tiny_inpaint_model.model_hash


def test_hash_follows_the_weights_not_the_folder(tiny_model, tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert load_model(copy, device="cpu").model_hash == tiny_model.model_hash

    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3
    save_file(state, weights)
    assert load_model(copy, device="cpu").model_hash != tiny_model.model_hash


def test_a_built_pipeline_is_adopted_as_is(tiny_model_dir):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    bundle = load_model(pipe, device="cpu")
    assert bundle.unet is pipe.unet and bundle.tokenizer is pipe.tokenizer
    assert bundle.source == "<StableDiffusionPipeline>"
    assert bundle.model_hash == load_model(pipe, device="cpu").model_hash  # tensor hash is deterministic


def test_conv_weights_are_channels_last_and_compute_the_same(tiny_model_dir):
    bundle = load_model(tiny_model_dir, device="cpu")
    plain = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    for module in (bundle.unet, bundle.vae):
        convs = [p for p in module.parameters() if p.ndim == 4 and p.shape[1] > 1]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not plain.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 77, bundle.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = bundle.unet(latents, 500, encoder_hidden_states=text).sample
        theirs = plain.unet(latents, 500, encoder_hidden_states=text).sample
        assert (ours - theirs).abs().max() < 1e-5
        assert (bundle.vae.decode(latents).sample - plain.vae.decode(latents).sample).abs().max() < 1e-5


def test_dtype_and_device_can_be_overridden(tiny_model_dir):
    bundle = load_model(tiny_model_dir, device="cpu", dtype=torch.bfloat16)
    assert bundle.unet.dtype == bundle.vae.dtype == bundle.text_encoder.dtype == torch.bfloat16
    assert pick_dtype(torch.device("cuda")) == torch.float16 and pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_device("cpu") == torch.device("cpu")


def test_pickle_weights_are_refused(tiny_model_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))  # what a pickle-only folder looks like
    with pytest.raises(ModelLoadError, match="never loads pickle"):
        load_model(folder, device="cpu")
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not even read")
    with pytest.raises(ModelLoadError, match="pickle checkpoints are unsafe"):
        load_model(checkpoint)


def test_offline_hub_id_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_model("charforge-tests/no-such-model", device="cpu")
    message = str(info.value)
    assert "charforge-tests/no-such-model" in message and "local diffusers folder" in message
    assert "\n" not in message


@pytest.mark.parametrize("ref", ["does/not/exist", "missing.safetensors", "./nowhere"])
def test_missing_references_name_the_model(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(ref)


def test_a_folder_that_is_not_a_diffusers_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_model(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelLoadError, match="cannot load model folder"):
        load_model(tmp_path)


def test_default_model_is_the_shipped_portrait_model():
    assert default_model_path().parts[-3:] == ("charforge", "models", "portrait-mini")


@pytest.fixture(scope="module")
def tiny_single_file(tiny_model, tmp_path_factory):
    """The tiny model as one original-layout .safetensors file, like checkpoints users download."""
    from helpers.ldm_format import to_ldm_checkpoint

    path = tmp_path_factory.mktemp("single") / "tiny-sd.safetensors"
    save_file(to_ldm_checkpoint(tiny_model.unet, tiny_model.vae, tiny_model.text_encoder), path)
    return path


def test_single_safetensors_file_loads_the_same_model(tiny_single_file, tiny_model, tiny_model_dir):
    bundle = load_model(tiny_single_file, device="cpu", config=tiny_model_dir)
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(bundle, name).state_dict(), getattr(tiny_model, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert bundle.source == str(tiny_single_file) and len(bundle.model_hash) == 64


def test_single_file_without_reachable_configs_says_what_to_do(tiny_single_file):
    with pytest.raises(ModelLoadError) as info:
        load_model(tiny_single_file, device="cpu")
    message = str(info.value)
    assert "tiny-sd.safetensors" in message and "--config" in message and "\n" not in message


def test_no_reference_means_the_default_model(monkeypatch, tmp_path):
    monkeypatch.setattr("charforge.engine.loading.default_model_path", lambda: tmp_path / "portrait-mini")
    with pytest.raises(ModelLoadError, match="default model is not installed at .*portrait-mini"):
        load_model()
