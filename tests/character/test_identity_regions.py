"""Region masks from words: which phrases name a region, and how competing heat maps become disjoint masks."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from charforge.character.regions import REGION_WORDS, mask_from_image, partition, region_alternatives, region_spans
from charforge.errors import InvalidInput

CAST = "portrait of a girl with short black hair, brown eyes, tan skin, red outfit, yellow background, wearing glasses, looking calm"


def test_region_spans_take_each_region_word_with_its_modifiers():
    regions = {**REGION_WORDS, "face": (*REGION_WORDS["face"], "looking calm")}
    spans = region_spans(CAST, regions)
    assert spans == {
        "face": ["brown eyes", "tan skin", "wearing glasses", "looking calm"],
        "hair": ["short black hair"],
        "outfit": ["red outfit"],
        "background": ["yellow background"],
    }
    # frame words ("portrait of a girl with") never count as a region's description
    assert region_spans("portrait of a girl with hair", {"hair": ("hair",)}) == {"hair": ["hair"]}
    assert region_spans("a cat", REGION_WORDS) == {}


def test_alternatives_change_one_region_description_and_nothing_else():
    spans = {"face": ["brown eyes", "looking calm"], "hair": ["short black hair"], "outfit": ["red outfit"]}
    alts = region_alternatives(CAST, spans, {"looking calm": ["looking calm", "smiling happily", "crying sadly"]})
    assert CAST.replace("looking calm", "smiling happily") in alts["face"]
    assert CAST.replace("looking calm", "crying sadly") in alts["face"]
    assert CAST.replace("brown eyes", "black eyes") in alts["face"]  # the colours of the other regions
    assert alts["hair"] == [CAST.replace("short black hair", f"short {c} hair") for c in ("brown", "red")]
    assert alts["outfit"] == [CAST.replace("red outfit", f"{c} outfit") for c in ("brown", "black")]
    for _region, prompts in alts.items():
        for prompt in prompts:
            assert prompt != CAST and len(prompt.split(",")) == len(CAST.split(","))
    assert region_alternatives(CAST, {"hair": ["hair"]}) == {}  # nothing to vary


def test_partition_recovers_a_known_layout_and_never_overlaps():
    h = w = 8
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    noise = torch.Generator().manual_seed(0)
    heats = {
        "top": (rows < 3).float() * 5 + torch.rand(h, w, generator=noise) * 0.5,
        "bottom": (rows >= 5).float() * 2 + torch.rand(h, w, generator=noise) * 0.2,  # other scale: standardised away
    }
    masks = partition(heats, (16, 16), floor=0.5)
    expect_top = torch.zeros(16, 16, dtype=torch.bool)
    expect_top[:6] = True
    expect_bottom = torch.zeros(16, 16, dtype=torch.bool)
    expect_bottom[10:] = True
    # borders may move by one cell (3x3 smoothing); the cores are exact and nothing overlaps
    assert masks["top"][:4].all() and not masks["top"][8:].any()
    assert masks["bottom"][12:].all() and not masks["bottom"][:8].any()
    assert not (masks["top"] & masks["bottom"]).any()
    assert (masks["top"] ^ expect_top).sum() <= 2 * 16 and (masks["bottom"] ^ expect_bottom).sum() <= 2 * 16


def test_partition_drops_regions_that_win_nowhere():
    flat = torch.zeros(4, 4)
    peak = torch.zeros(4, 4)
    peak[1:3, 1:3] = 1.0
    masks = partition({"peak": peak, "flat": flat}, (4, 4), floor=0.5)
    assert set(masks) == {"peak"}
    assert partition({}, (4, 4)) == {}


@pytest.mark.parametrize("kind", ["pil", "array", "rgb", "tensor"])
def test_mask_pictures_of_any_kind_become_bool_masks(kind):
    drawn = np.zeros((6, 6), dtype=np.uint8)
    drawn[2:4, 1:5] = 255
    given = {
        "pil": PIL.Image.fromarray(drawn),
        "array": drawn,
        "rgb": np.stack([drawn] * 3, axis=-1),
        "tensor": torch.from_numpy(drawn > 0).float(),
    }[kind]
    assert torch.equal(mask_from_image(given, (6, 6)), torch.from_numpy(drawn > 0))


def test_bad_mask_pictures_are_one_clear_error():
    with pytest.raises(InvalidInput, match="must match"):
        mask_from_image(np.ones((4, 6)), (6, 6))
    with pytest.raises(InvalidInput, match="empty"):
        mask_from_image(np.zeros((6, 6)), (6, 6))
    with pytest.raises(InvalidInput, match="2-D"):
        mask_from_image(np.ones((2, 6, 6, 2)), (6, 6))
