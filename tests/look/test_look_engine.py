"""Looks on the tiny model: wearing leaves no trace, files round-trip bit-exactly and act in plain diffusers
exactly as in charforge."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import save_file

from charforge.engine import txt2img
from charforge.engine.adapters import (
    Look,
    read_embedding,
    read_lora,
    train_lora,
    train_token,
    training_set,
    wear,
    wearing,
    worn_key,
    write_embedding,
    write_lora,
)
from charforge.engine.adapters.pipeline import diffusers_pipeline
from charforge.errors import InvalidInput

PLAIN = "a girl with red hair, smiling"
STEPS = 3


def _pictures() -> list[PIL.Image.Image]:
    rng = np.random.default_rng(5)
    return [PIL.Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)) for _ in range(2)]


@pytest.fixture(scope="module")
def learnt(tiny_model):
    """A 2-vector token and a LoRA (UNet + text encoder) after a few steps: small but non-zero changes."""
    data = training_set(tiny_model, _pictures(), ["<tokb>, smiling", "<tokb>, sad"])
    vectors, _ = train_token(tiny_model, data, "<tokb>", vectors=2, steps=4, lr=0.1)
    lora, _ = train_lora(tiny_model, data, rank=2, steps=4, lr=0.05, text_encoder=True, tokens={"<tokb>": vectors})
    return vectors, lora


def _state(model) -> dict:
    table = model.text_encoder.get_input_embeddings()
    return {
        "tokenizer": model.tokenizer,
        "length": len(model.tokenizer),
        "vocab": dict(model.tokenizer.get_vocab()),
        "table": table,
        "weight": table.weight.data_ptr(),
        "rows": table.weight.detach().clone(),
        "vocab_size": model.text_encoder.config.vocab_size,
        "processors": {k: type(v) for k, v in model.unet.attn_processors.items()},
        "unet_modules": {k: type(v) for k, v in model.unet.named_modules()},
        "text_modules": {k: type(v) for k, v in model.text_encoder.named_modules()},
        "unet_weights": {k: v.clone() for k, v in model.unet.state_dict().items()},
    }


def _render(model, prompt=PLAIN) -> torch.Tensor:
    return txt2img(model, prompt, seed=3, steps=STEPS, guidance=5.0).pixels


@pytest.mark.slow
def test_render_a_then_b_with_its_look_then_a_again_is_bit_identical(tiny_model, learnt):
    vectors, lora = learnt
    before = _state(tiny_model)
    first = _render(tiny_model)
    with wearing(tiny_model, Look({"<tokb>": vectors}, lora, 0.8)):
        assert len(tiny_model.tokenizer) == before["length"] + 2  # <tokb> and <tokb>_1
        assert "<tokb>_1" in tiny_model.tokenizer.get_vocab()
        worn_b = _render(tiny_model, "<tokb>, smiling")
        worn_plain = _render(tiny_model)
    again = _render(tiny_model)
    after = _state(tiny_model)

    assert torch.equal(first, again)
    assert not torch.equal(first, worn_plain)  # the LoRA really acted while worn
    assert not torch.equal(worn_b, worn_plain)
    assert after["tokenizer"] is before["tokenizer"] and after["length"] == before["length"]
    assert after["vocab"] == before["vocab"] and "<tokb>_1" not in after["vocab"]
    assert after["table"] is before["table"] and after["weight"] == before["weight"]  # the same tensor memory
    assert torch.equal(after["rows"], before["rows"]) and after["vocab_size"] == before["vocab_size"]
    assert after["processors"] == before["processors"]
    assert after["unet_modules"] == before["unet_modules"] and after["text_modules"] == before["text_modules"]
    assert after["unet_weights"].keys() == before["unet_weights"].keys()
    assert all(torch.equal(after["unet_weights"][k], v) for k, v in before["unet_weights"].items())
    assert not getattr(tiny_model.unet, "peft_config", None) and worn_key(tiny_model) is None


@pytest.mark.slow
def test_wearing_the_same_look_again_does_not_reload(tiny_model, learnt, monkeypatch):
    vectors, lora = learnt
    look = Look({"<tokb>": vectors}, lora)
    pipe = diffusers_pipeline(tiny_model)
    calls = []
    original = pipe.load_lora_weights
    monkeypatch.setattr(pipe, "load_lora_weights", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    try:
        wear(tiny_model, look)
        first = _render(tiny_model, "<tokb>, smiling")
        wear(tiny_model, Look({"<tokb>": vectors.clone()}, {k: v.clone() for k, v in lora.items()}))  # same content
        second = _render(tiny_model, "<tokb>, smiling")
    finally:
        wear(tiny_model, None)
    assert len(calls) == 1 and torch.equal(first, second)


def test_a_look_that_does_not_fit_is_refused_and_leaves_the_model_bare(tiny_model):
    before = _state(tiny_model)
    with pytest.raises(InvalidInput):
        wear(tiny_model, Look({"<wide>": torch.zeros(1, 64)}))
    after = _state(tiny_model)
    assert after["tokenizer"] is before["tokenizer"] and after["weight"] == before["weight"]
    assert worn_key(tiny_model) is None


def test_files_round_trip_bit_exactly(tmp_path, learnt):
    vectors, lora = learnt
    token, back = read_embedding(write_embedding(tmp_path / "learned_embeds.safetensors", "<tokb>", vectors))
    assert token == "<tokb>" and torch.equal(back, vectors)
    lora_back = read_lora(write_lora(tmp_path / "pytorch_lora_weights.safetensors", lora))
    assert lora_back.keys() == lora.keys() and all(torch.equal(lora_back[k], v) for k, v in lora.items())
    save_file({"emb_params": vectors}, str(tmp_path / "a1111.safetensors"))  # A1111 layout: name from the user
    assert read_embedding(tmp_path / "a1111.safetensors")[0] is None


def test_pickles_and_foreign_files_are_refused(tmp_path):
    torch.save({"<x>": torch.zeros(1, 32)}, tmp_path / "emb.pt")
    with pytest.raises(InvalidInput, match="pickle"):
        read_embedding(tmp_path / "emb.pt")
    with pytest.raises(InvalidInput, match="pickle"):
        read_lora(tmp_path / "emb.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidInput):
        read_lora(tmp_path / "junk.safetensors")
    save_file({"weight": torch.zeros(4, 4), "bias": torch.zeros(4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(InvalidInput):
        read_lora(tmp_path / "model.safetensors")
    with pytest.raises(InvalidInput):
        read_embedding(tmp_path / "model.safetensors")


@pytest.mark.slow
def test_exported_files_change_plain_diffusers_exactly_as_charforge(tmp_path, tiny_model, tiny_model_dir, learnt):
    from diffusers import StableDiffusionPipeline

    vectors, lora = learnt
    embeds = write_embedding(tmp_path / "learned_embeds.safetensors", "<tokb>", vectors)
    weights = write_lora(tmp_path / "pytorch_lora_weights.safetensors", lora)
    prompt = "<tokb>, smiling"
    with wearing(tiny_model, Look({"<tokb>": vectors}, lora)):
        ours = txt2img(tiny_model, prompt, seed=9, steps=STEPS, guidance=5.0).pixels.permute(0, 2, 3, 1).numpy()

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(embeds))
    pipe.load_lora_weights(str(tmp_path), weight_name=weights.name)
    theirs = pipe(prompt, num_inference_steps=STEPS, guidance_scale=5.0, generator=torch.Generator().manual_seed(9),
                  output_type="np").images  # fmt: skip
    bare = txt2img(tiny_model, prompt, seed=9, steps=STEPS, guidance=5.0).pixels.permute(0, 2, 3, 1).numpy()

    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(ours - bare).max() > 1e-3  # the look changed the picture (the token spelt out otherwise)


@pytest.mark.slow
def test_a_kohya_lora_goes_through_diffusers_converters_to_the_same_effect(tmp_path, tiny_model):
    data = training_set(tiny_model, _pictures(), ["smiling", "sad"])
    lora, _ = train_lora(tiny_model, data, rank=2, steps=3, lr=0.05, text_encoder=False)  # kohya's UNet names
    kohya = {}
    for (
        key,
        value,
    ) in lora.items():  # unet.<module>.lora.down.weight -> lora_unet_<module_with_underscores>.lora_down.weight
        module, part = key.removeprefix("unet.").rsplit(".lora.", 1)
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.lora_{part}"] = value
        kohya[f"{name}.alpha"] = torch.tensor(2.0)
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    back = read_lora(tmp_path / "kohya.safetensors")
    with wearing(tiny_model, Look(lora=lora)):
        ours = _render(tiny_model)
    with wearing(tiny_model, Look(lora=back)):
        theirs = _render(tiny_model)
    assert any(k.startswith("lora_unet_") for k in back)
    assert (ours - theirs).abs().max() <= 1e-5 and not torch.equal(ours, _render(tiny_model))


@pytest.mark.slow
def test_ctrl_c_stops_training_and_returns_the_best_checkpoint(tiny_model):
    from charforge.engine.adapters.textual_inversion import TokenEncoder, initial_vectors
    from charforge.engine.adapters.training import fit

    data = training_set(tiny_model, _pictures(), ["<tokc>, smiling", "<tokc>, sad"])
    encoder = TokenEncoder(tiny_model, {"<tokc>": initial_vectors(tiny_model, 1)}, trainable="<tokc>")
    encoder.text_encoder.requires_grad_(False)
    calls, snapshots = [], []

    def encode(captions):
        calls.append(1)
        if len(calls) == 6:  # check, step 1 + check, step 2 + check, then step 3 is interrupted
            raise KeyboardInterrupt
        return encoder(captions)

    def snapshot():
        snapshots.append(encoder.trained_vectors())
        return {"v": snapshots[-1]}

    result = fit(tiny_model, data, [encoder.rows], encode, snapshot, steps=50, lr=0.5, check_every=1)
    assert result.interrupted and result.steps == 2
    assert any(result.state["v"] is s for s in snapshots)
    assert not torch.equal(encoder.trained_vectors(), snapshots[0])  # it did train before the interrupt


def test_timestep_bias_favours_the_noisy_end_and_stays_in_the_schedule(tiny_model):
    from diffusers import DDPMScheduler

    from charforge.engine.adapters.training import _timesteps

    scheduler = DDPMScheduler.from_config(tiny_model.scheduler.config)
    total = scheduler.config.num_train_timesteps
    uniform = _timesteps(scheduler, 4000, None, torch.Generator().manual_seed(0)).float()
    biased = _timesteps(scheduler, 4000, 2.0, torch.Generator().manual_seed(0)).float()
    for t in (uniform, biased):
        assert t.min() >= 0 and t.max() <= total - 1
    assert abs(uniform.median().item() / total - 0.5) < 0.05
    assert abs(biased.median().item() / total - torch.sigmoid(torch.tensor(2.0)).item()) < 0.03
    assert (biased < total / 2).float().mean() < 0.05  # the late, face-drawing half is rarely trained


@pytest.mark.slow
def test_a_lora_learns_the_text_encoder_by_default_and_takes_it_off_again(tiny_model):
    """The default LoRA changes what the prompt means (its text-encoder layers), not only the UNet."""

    def encode(prompt: str) -> torch.Tensor:
        ids = tiny_model.tokenizer(prompt, padding="max_length", truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            return tiny_model.text_encoder(ids)[0]

    data = training_set(tiny_model, _pictures(), ["a girl, smiling", "a girl, crying"])
    lora, _ = train_lora(tiny_model, data, rank=2, steps=3, lr=0.05)
    unet_only, _ = train_lora(tiny_model, data, rank=2, steps=3, lr=0.05, text_encoder=False)
    assert {k.split(".")[0] for k in lora} == {"unet", "text_encoder"}
    assert {k.split(".")[0] for k in unet_only} == {"unet"}
    bare = encode(PLAIN)
    with wearing(tiny_model, Look(lora=lora)):
        worn = encode(PLAIN)
    with wearing(tiny_model, Look(lora=unet_only)):
        assert torch.equal(encode(PLAIN), bare)
    assert (worn - bare).abs().max() > 1e-6
    assert torch.equal(encode(PLAIN), bare)
