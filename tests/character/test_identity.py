"""Identity on create: stored artifacts, attention masks, user masks, model change -> StaleIdentity -> reinvert."""

from __future__ import annotations

import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from helpers.characters import PROMPT, STEPS, face_mask, make_character
from safetensors.torch import load_file, save_file

from charforge.character.identity import build_identity, character_model, load_identity
from charforge.engine import decode_latents
from charforge.errors import InvalidInput, ModelLoadError, NotFound, StaleIdentity
from charforge.forge import Forge


@pytest.fixture
def forge(tmp_path):
    with Forge.open(tmp_path / "ws", identity_builder=build_identity) as f:
        yield f


@pytest.fixture
def mira(forge_copy, tiny_model_dir):
    """Mira with her identity and user masks, copied from a workspace built once per session."""
    return forge_copy("identity-mira", lambda f: make_character(f, tiny_model_dir)).get("mira")


@pytest.mark.slow
def test_create_stores_base_inversion_and_masks(forge, tiny_model_dir):
    mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_options={"steps": STEPS})
    model = character_model(mira)
    kinds = {(a.kind, a.name) for a in mira.store.identity()}
    assert {("base_image", "main"), ("inverted_latents", "main"), ("inversion_offsets", "main")} <= kinds
    assert mira.model_hash == model.model_hash
    identity = load_identity(mira, model)
    assert identity.inversion.method == "direct" and identity.inversion.steps == STEPS
    assert identity.inversion.prompt == PROMPT and identity.history[0]["action"] == "create"
    # the inversion redraws exactly the stored base CG: its clean latent decodes to the base pixels
    with torch.no_grad():
        redrawn = (decode_latents(model, identity.inversion.clean_latent) / 2 + 0.5).clamp(0, 1)
    pixels = (redrawn[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.abs(pixels.astype(int) - identity.base.astype(int)).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("method", ["influence", "attention"])
def test_derived_masks_are_disjoint_regions_named_by_their_words(forge, tiny_model_dir, method):
    options = {"steps": STEPS, "mask_method": method}
    mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_options=options)
    identity = load_identity(mira)
    masks = identity.masks
    assert masks and set(masks) <= {"face", "hair", "outfit", "background"}
    stacked = torch.stack([m.int() for m in masks.values()])
    assert stacked.sum(0).max() <= 1  # regions never overlap
    words = {a.name: a.metadata["words"] for a in mira.store.identity() if a.kind == "mask"}
    for _region, found in words.items():
        assert all(word in PROMPT for word in found)
    assert all(identity.mask_sources[name] == method for name in masks)


def test_a_failed_build_leaves_no_character(forge, tmp_path):
    with pytest.raises(ModelLoadError):
        forge.create("ghost", prompt=PROMPT, model=str(tmp_path / "no-model-here"))
    assert not forge.exists("ghost")


def _changed_copy(model_dir, target):
    """The tiny model with one UNet weight nudged: a different model with a different hash."""
    shutil.copytree(model_dir, target)
    weights = target / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(weights))
    return target


@pytest.mark.slow
def test_model_change_is_stale_until_reinvert(mira, tiny_model_dir, tmp_path):
    first = mira.feel(joy=0.8, record=False)
    base_before = mira.store.get_identity("base_image").tensors["pixels"].clone()
    trajectory_before = mira.store.get_identity("inverted_latents").tensors["trajectory"].clone()
    mira.update(model=str(_changed_copy(tiny_model_dir, tmp_path / "changed")))

    with pytest.raises(StaleIdentity, match=r"run `charforge reinvert mira`"):
        mira.feel(joy=0.8, record=False)
    with pytest.raises(StaleIdentity):
        mira.feel(record=False)  # even the base CG: the cached one was drawn by the old model

    mira.reinvert()
    assert mira.model_hash == character_model(mira).model_hash
    after = mira.feel(joy=0.8, record=False)
    assert not after.cached and after.path != first.path
    # the picture is kept (inverted again, not redrawn); its inversion and history are new
    assert torch.equal(mira.store.get_identity("base_image").tensors["pixels"], base_before)
    assert not torch.equal(mira.store.get_identity("inverted_latents").tensors["trajectory"], trajectory_before)
    assert [h["action"] for h in load_identity(mira).history] == ["create", "reinvert"]
    assert load_identity(mira).mask_sources["face"] == "user"  # user masks survive a reinvert


@pytest.mark.slow
def test_stale_identity_through_the_cli(mira, tiny_model_dir, tmp_path, cli):
    mira.update(model=str(_changed_copy(tiny_model_dir, tmp_path / "changed")))
    ws = str(mira.store.workspace.root)
    code, out, err = cli("emote", "mira", "joy=0.8", "-w", ws)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "charforge reinvert mira" in err
    code, out, err = cli("reinvert", "mira", "--json", "-w", ws)
    assert code == 0, err
    assert json.loads(out)["model_hash"] == character_model(mira).model_hash
    code, out, err = cli("emote", "mira", "joy=0.8", "-w", ws)
    assert code == 0 and out.strip().endswith(".png")


@pytest.mark.slow
def test_rerender_draws_a_fresh_base(mira):
    mira.update(seed=8)
    before = mira.store.get_identity("base_image").tensors["pixels"].clone()
    mira.reinvert(rerender=True, steps=STEPS)
    assert not torch.equal(mira.store.get_identity("base_image").tensors["pixels"], before)
    assert [h["action"] for h in load_identity(mira).history] == ["create", "rerender"]


@pytest.mark.slow
def test_user_masks_are_validated_and_win_over_attention(forge, tiny_model_dir):
    mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_options={"steps": STEPS})
    size = mira.store.get_identity("base_image").tensors["pixels"].shape[0]
    with pytest.raises(InvalidInput, match="must match"):
        mira.set_mask("face", np.ones((size * 2, size), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="empty"):
        mira.set_mask("face", np.zeros((size, size), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="invalid character name"):  # region names are slugs too
        mira.set_mask("../face", face_mask(size))
    mira.set_mask("face", PIL.Image.fromarray(face_mask(size)))
    stored = load_identity(mira).mask("face")
    assert torch.equal(stored, torch.from_numpy(face_mask(size) > 0))
    with pytest.raises(NotFound, match="no 'wings' mask"):
        load_identity(mira).mask("wings")


def test_mask_cli_sets_and_exports(mira, tmp_path, cli):
    size = mira.store.get_identity("base_image").tensors["pixels"].shape[0]
    drawn = np.zeros((size, size), dtype=np.uint8)
    drawn[: size // 4] = 255
    PIL.Image.fromarray(drawn).save(tmp_path / "hair.png")
    ws = str(mira.store.workspace.root)
    code, out, err = cli("mask", "mira", "hair", "--from", str(tmp_path / "hair.png"), "-w", ws)
    assert code == 0, err
    code, out, err = cli("mask", "mira", "hair", "--out", str(tmp_path / "back.png"), "--json", "-w", ws)
    assert code == 0 and json.loads(out)["pixels"] == int((drawn > 0).sum())
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "back.png")), drawn)
    PIL.Image.new("L", (size + 3, size), 255).save(tmp_path / "wrong.png")
    code, out, err = cli("mask", "mira", "hair", "--from", str(tmp_path / "wrong.png"), "-w", ws)
    assert code == 2 and "must match" in err


@pytest.mark.slow
def test_cli_create_renders_unless_told_not_to(tmp_path, tiny_model_dir, cli):
    ws = str(tmp_path / "ws")
    code, out, err = cli("create", "mira", "--prompt", PROMPT, "--model", str(tiny_model_dir), "--json", "-w", ws)
    assert code == 0, err
    data = json.loads(out)
    assert data["model_hash"] and data["base_cg"].endswith(".png")
    code, out, err = cli("create", "nell", "--prompt", PROMPT, "--no-render", "--json", "-w", ws)
    assert code == 0 and "base_cg" not in json.loads(out) and json.loads(out)["model_hash"] is None
    code, out, err = cli("create", "ivy", "--prompt", PROMPT, "--model", str(tmp_path / "nothing"), "-w", ws)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert [c["name"] for c in json.loads(cli("list", "--json", "-w", ws)[1])] == ["mira", "nell"]


@pytest.mark.slow
def test_cli_create_builds_the_identity_as_asked_and_keeps_the_choice_for_reinvert(tmp_path, tiny_model_dir, cli):
    ws = str(tmp_path / "ws")
    code, out, err = cli("create", "mira", "--prompt", PROMPT, "--model", str(tiny_model_dir), "--steps", "3",
                         "--method", "ddim", "--json", "-w", ws)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["settings"]["identity"] == {"steps": 3, "method": "ddim"}
    with Forge.open(ws) as forge:
        inversion = forge.get("mira").store.get_identity("inverted_latents").metadata["inversion"]
        assert (inversion["steps"], inversion["method"]) == (3, "ddim")
    code, out, err = cli("reinvert", "mira", "--json", "-w", ws)  # no options: the character's own
    assert code == 0, err
    with Forge.open(ws) as forge:
        inversion = forge.get("mira").store.get_identity("inverted_latents").metadata["inversion"]
        assert (inversion["steps"], inversion["method"]) == (3, "ddim")
    for bad in (("--method", "nope"), ("--steps", "0"), ("--steps", "201")):
        code, out, err = cli("create", "ivy", "--prompt", PROMPT, "--model", str(tiny_model_dir), *bad, "-w", ws)
        assert code == 2 and len(err.strip().splitlines()) == 1 and bad[0] in err
    assert [c["name"] for c in json.loads(cli("list", "--json", "-w", ws)[1])] == ["mira"]
