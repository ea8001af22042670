"""Character inpainting: only the region changes, --adopt makes it the new base (re-inverted, in history)."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from helpers.characters import PROMPT, make_character

from charforge.character.feel import region_prompt
from charforge.character.identity import load_identity

BLUE_PROMPT = PROMPT.replace("green outfit", "blue outfit")


@pytest.fixture
def mira(forge_copy, tiny_model_dir):
    """Mira in a blue outfit, copied from a workspace built once per session."""
    return forge_copy("inpaint-mira", lambda f: make_character(f, tiny_model_dir, prompt=BLUE_PROMPT)).get("mira")


def _pixels(result) -> np.ndarray:
    return np.asarray(PIL.Image.open(result.path).convert("RGB"))


def test_inpainting_the_outfit_changes_only_the_outfit(mira):
    base = load_identity(mira).base
    outfit = load_identity(mira).mask("outfit").numpy()
    result = mira.inpaint("outfit", "red outfit", seed=3)
    drawn = _pixels(result)
    assert np.array_equal(drawn[~outfit], base[~outfit])  # outside the region: the base CG's own pixels
    assert np.abs(drawn[outfit].astype(int) - base[outfit].astype(int)).mean() > 1  # inside: redrawn
    assert result.prompt == BLUE_PROMPT.replace("blue outfit", "red outfit")
    assert mira.prompt == BLUE_PROMPT and not result.adopted  # not adopted: the character is unchanged
    again = mira.inpaint("outfit", "red outfit", seed=3)
    assert again.cached and again.path == result.path


def test_inpainting_with_a_mask_picture(mira):
    base = load_identity(mira).base
    size = base.shape[0]
    corner = np.zeros((size, size), dtype=np.uint8)
    corner[: size // 4, : size // 4] = 255
    drawn = _pixels(mira.inpaint(PIL.Image.fromarray(corner), "white background", seed=1))
    inside = corner > 0
    assert np.array_equal(drawn[~inside], base[~inside])


@pytest.mark.slow
def test_adopt_reinverts_and_records_the_change(mira):
    identity = load_identity(mira)
    old_trajectory = identity.inversion.trajectory
    result = mira.inpaint("outfit", "red outfit", adopt=True, seed=3)
    assert result.adopted
    mira.refresh()
    assert mira.prompt == BLUE_PROMPT.replace("blue outfit", "red outfit")
    adopted = load_identity(mira, None)
    assert np.array_equal(adopted.base, _pixels(result))  # the inpainted picture is the new base
    assert adopted.inversion.prompt == mira.prompt
    assert not torch.equal(adopted.inversion.trajectory, old_trajectory)
    assert adopted.inversion.steps == identity.inversion.steps
    last = adopted.history[-1]
    assert [h["action"] for h in adopted.history] == ["create", "inpaint"]
    assert (last["region"], last["prompt"], last["previous_prompt"]) == ("outfit", "red outfit", BLUE_PROMPT)
    assert last["asset"] == result.asset.relpath.as_posix()
    assert adopted.mask_sources["outfit"] == "user"  # the user's masks are kept
    # expression edits now start from the new base: the red outfit stays (it is outside the face)
    face = _pixels(mira.feel(joy=1.0, record=False))
    outfit = adopted.mask("outfit").numpy()
    assert np.array_equal(face[outfit], adopted.base[outfit])


@pytest.mark.slow
def test_inpaint_cli(mira, cli):
    ws = str(mira.store.workspace.root)
    code, out, err = cli("inpaint", "mira", "--region", "outfit", "--prompt", "red outfit", "--adopt", "--json", "-w", ws)
    assert code == 0, err
    data = json.loads(out)
    assert data["adopted"] and data["path"].endswith(".png") and "red outfit" in data["base_prompt"]
    shown = json.loads(cli("show", "mira", "--json", "-w", ws)[1])
    assert data["path"] in [a["path"] for a in shown["assets"]]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("red outfit", "a girl with long red hair, green eyes, red outfit, pink background"),
        ("short blue hair", "a girl with short blue hair, green eyes, blue outfit, pink background"),
        ("yellow background", "a girl with long red hair, green eyes, blue outfit, yellow background"),
        ("wings", None),
        ("red outfit, blue hair", None),
    ],
)
def test_region_prompt_replaces_the_words_ending_in_the_region(prompt, expected):
    base = "a girl with long red hair, green eyes, blue outfit, pink background"
    assert region_prompt(base, prompt) == expected


def test_bad_inpaint_input(mira):
    with pytest.raises(ValueError, match="prompt"):
        mira.inpaint("outfit", "  ")
    with pytest.raises(ValueError, match="strength"):
        mira.inpaint("outfit", "red outfit", strength=1.5)
    with pytest.raises(ValueError, match="must match"):
        mira.inpaint(np.ones((5, 5)), "red outfit")
    assert mira.store.assets("cg") == []
