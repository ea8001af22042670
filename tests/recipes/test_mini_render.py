"""The procedural portrait world: determinism, exact masks, bold expressions, captions the tokenizer keeps whole."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from charforge.errors import InvalidInput
from charforge.recipes.portrait_mini import population, render
from charforge.recipes.portrait_mini.dataset import PortraitSource
from charforge.recipes.portrait_mini.face import EMOTIONS, PARTS, face_of, ownership
from charforge.recipes.portrait_mini.population import is_held_out, sample_portraits
from charforge.recipes.portrait_mini.render import (
    BACKGROUND_COLOURS,
    EXPRESSIONS,
    HAIR_COLOURS,
    MASK_NAMES,
    Portrait,
    portrait_from_caption,
)
from charforge.recipes.portrait_mini.tokenizer import build_tokenizer, caption_words, extend_tokenizer


def _portraits(n: int, seed: int = 3) -> list[Portrait]:
    return list(sample_portraits(seed, n, held_out=None))


def _interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose whole 3x3 neighbourhood is in the mask (no anti-aliased edge)."""
    return ndimage.binary_erosion(mask, structure=np.ones((3, 3)))


def test_same_portrait_renders_identically_and_seeds_differ():
    a = list(sample_portraits(5, 4, held_out=None))
    b = list(sample_portraits(5, 4, held_out=None))
    assert a == b
    for p, q in zip(a, b):
        assert np.array_equal(render.render(p)[0], render.render(q)[0])
    assert a != list(sample_portraits(6, 4, held_out=None))


def test_a_face_mix_sets_the_shares_of_calm_single_and_mixed_faces():
    counts = [len(p.state()) for p in sample_portraits(8, 400, held_out=None, mix=(0.0, 0.2, 0.8, 0.0))]
    assert set(counts) == {1, 2} and 0.7 < counts.count(2) / len(counts) < 0.9
    assert list(sample_portraits(8, 5, held_out=None)) == list(
        sample_portraits(8, 5, held_out=None, mix=population.FACE_MIX)
    )


def test_an_emphasis_draws_an_emotion_more_often_and_none_keeps_the_shipped_data():
    emphasised = [p.state() for p in sample_portraits(8, 600, held_out=None, emphasis={"trust": 4.0})]
    shares = {e: sum(e in s for s in emphasised) for e in EMOTIONS}
    assert shares["trust"] > 2 * max(v for e, v in shares.items() if e != "trust")
    assert list(sample_portraits(8, 20, held_out=None)) == list(sample_portraits(8, 20, held_out=None, emphasis={}))


def test_masks_partition_the_image_and_match_the_drawn_colours():
    for p in _portraits(12):
        image, masks = render.render(p)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert set(masks) == set(MASK_NAMES)
        total = sum(m.astype(int) for m in masks.values())
        assert (total == 1).all()
        bg = _interior(masks["background"])
        assert bg.sum() > 100
        assert (image[bg] == BACKGROUND_COLOURS[p.background]).all()
        hair = _interior(masks["hair"])
        if hair.any():
            # the hair colour is exact inside the hair region (hats and glasses are other regions/lines)
            share = (image[hair] == HAIR_COLOURS[p.hair_colour]).all(-1).mean()
            assert share > 0.95


def test_face_stays_at_the_same_place_and_size():
    centres, areas = [], []
    for p in _portraits(20, seed=11):
        face = render.render(p)[1]["face"]
        ys, xs = np.nonzero(face)
        centres.append((ys.mean(), xs.mean()))
        areas.append(face.sum())
    centres = np.array(centres)
    assert np.ptp(centres[:, 1]) < 1.0  # horizontally fixed to a pixel
    assert np.ptp(centres[:, 0]) < 4.0  # fringes cover a little of the forehead
    assert min(areas) > 0.8 * max(areas)


def test_an_expression_change_stays_on_the_face():
    """What an emotion edit may touch: the face of either picture, dilated (tears run past the chin)."""
    for p in _portraits(10, seed=4):
        base, masks = render.render(p.with_expression("neutral", 0.0))
        for expression in EXPRESSIONS:
            other, other_masks = render.render(p.with_expression(expression, 1.0))
            face = ndimage.binary_dilation(masks["face"] | other_masks["face"], iterations=3)
            changed = (other != base).any(-1)
            # at most the anti-aliased rim of the sweat drop where it overlaps long hair
            assert (changed & ~face).sum() <= 2, expression
            if expression != "neutral":
                assert changed.sum() > 40, expression  # bold: at least 1% of the picture


GRID = [round(0.1 * k, 1) for k in range(0, 11)]
# the drawn features that must grow with intensity, (part, parameter, sign), per emotion
FEATURES = {
    "joy": [("mouth", "lift", 1), ("mouth", "open", 1), ("eyes", "open", -1)],
    "trust": [("mouth", "lift", 1), ("eyes", "lid", 1)],
    "fear": [("brows", "inner", -1), ("eyes", "open", 1), ("mouth", "wave", 1)],
    "surprise": [("brows", "raise_", -1), ("eyes", "open", 1), ("mouth", "open", 1)],
    "sadness": [("brows", "inner", -1), ("mouth", "lift", -1)],
    "disgust": [("brows", "asym", 1), ("mouth", "skew", 1), ("mouth", "tongue", 1)],
    "anger": [("brows", "inner", 1), ("mouth", "clench", 1)],
    "anticipation": [("brows", "raise_", -1), ("eyes", "sparkle", 1), ("mouth", "lift", 1)],
}


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_intensity_moves_the_drawn_features_monotonically(emotion):
    faces = [face_of({emotion: i}) for i in GRID]
    assert all(v == 0 for part in ("brows", "eyes", "mouth") for v in faces[0].part(part).values())
    for part, key, sign in FEATURES[emotion]:
        values = [sign * f.part(part)[key] for f in faces]
        assert all(a <= b for a, b in zip(values, values[1:])), (part, key)
        assert values[-1] > values[0], (part, key)
    # and the picture moves away from the calm face at every step of 0.2, including the first one
    p = _portraits(1, seed=8)[0]
    calm = render.render(p.with_expression("neutral", 0.0))[0].astype(int)
    dist = [np.abs(render.render(p.with_state({emotion: i}))[0].astype(int) - calm).sum() for i in (0.2, 0.4, 0.6, 1.0)]
    assert dist[0] > 2000 and all(a < b for a, b in zip(dist, dist[1:])), dist


def test_marks_grow_with_their_own_intensity():
    p = _portraits(1, seed=9)[0].with_expression("neutral", 0.0)
    cheeks = (slice(30, 37), slice(14, 22))  # the left blush
    red = [render.render(p.with_state({"joy": i}))[0][cheeks].astype(int) for i in (0.2, 0.6, 1.0)]
    redness = [float((r[..., 0] - r[..., 1]).mean()) for r in red]
    assert redness[0] < redness[1] < redness[2]
    under_eye = (slice(33, 48), slice(22, 27))  # where the left tear runs
    blue = [render.render(p.with_state({"sadness": i}))[0][under_eye].astype(int) for i in (0.2, 0.6, 1.0)]
    blueness = [float((b[..., 2] - b[..., 0]).mean()) for b in blue]
    assert blueness[0] < blueness[1] < blueness[2]


@pytest.mark.parametrize(("mix", "owners"), [
    ({"anger": 0.5, "disgust": 0.5}, {"brows": "anger", "mouth": "disgust"}),
    ({"joy": 0.6, "surprise": 0.4}, {"mouth": "joy", "eyes": "surprise"}),
    ({"sadness": 0.5, "fear": 0.5}, {"brows": "sadness", "eyes": "fear"}),
])
def test_each_part_of_a_mixture_takes_its_own_blend(mix, owners):
    shares = ownership(mix)
    for part in PARTS:
        assert sum(shares[part].values()) == pytest.approx(1.0)
    mixed = face_of(mix)
    for part, emotion in owners.items():
        assert shares[part][emotion] > 0.8, (part, shares[part])
        alone = face_of({emotion: mix[emotion]}).part(part)
        assert max(abs(mixed.part(part)[k] - v) for k, v in alone.items()) < 0.25 * max(1.0, *map(abs, alone.values()))
    # both emotions' marks are drawn, each as strong as its own intensity
    assert set(mixed.marks) == set(mix)


def test_mixture_shows_both_emotions_in_pixels():
    p = _portraits(1, seed=10)[0]
    both = render.render(p.with_state({"anger": 0.6, "disgust": 0.6}))[0].astype(int)
    anger = render.render(p.with_state({"anger": 0.6}))[0].astype(int)
    disgust = render.render(p.with_state({"disgust": 0.6}))[0].astype(int)
    brows, mouth = (slice(16, 24), slice(16, 48)), (slice(34, 44), slice(20, 44))
    assert np.abs(both[brows] - anger[brows]).sum() < np.abs(both[brows] - disgust[brows]).sum()
    assert np.abs(both[mouth] - disgust[mouth]).sum() < np.abs(both[mouth] - anger[mouth]).sum()


def test_captions_share_one_structure_with_the_expression_last():
    for p in _portraits(30):
        cap = p.caption()
        assert cap.startswith(f"portrait of a girl with {p.hair_style} {p.hair_colour} hair, ")
        assert cap.endswith(", " + render.expression_phrase(p.state()))
    person = _portraits(1)[0]
    assert person.with_state({}).caption().endswith(", looking calm")
    assert person.with_state({"joy": 0.15}).caption().endswith(", faintly smiling happily")
    assert person.with_state({"joy": 1.0}).caption().endswith(", extremely smiling happily")
    # mixtures: basis order whatever the strengths, so only intensity words differ between two states
    a = person.with_state({"disgust": 0.9, "anger": 0.3}).caption()
    b = person.with_state({"disgust": 0.3, "anger": 0.9}).caption()
    assert a.endswith(", extremely grimacing disgustedly and slightly frowning angrily")
    assert b.endswith(", slightly grimacing disgustedly and extremely frowning angrily")
    words = [person.with_state({e: 0.5}).caption().split() for e in EMOTIONS]
    assert len({len(w) for w in words}) == 1  # single emotions swap word for word


def test_intensity_words_cover_the_range_in_order():
    words = [render.intensity_word(k / 100) for k in range(0, 101)]
    order = [w for _, w in render.INTENSITY_WORDS]
    ranks = [order.index(w) for w in words]
    assert ranks == sorted(ranks) and set(words) == set(order)
    for word in order:
        assert render.intensity_word(render.band_centre(word)) == word


def test_captions_parse_back_to_their_portrait():
    for p in _portraits(40, seed=12):
        again = portrait_from_caption(p.caption())
        assert again.caption() == p.caption() and again.identity_key() == p.identity_key()
        assert set(again.state()) == set(p.state())
    with pytest.raises(InvalidInput, match="caption"):
        portrait_from_caption("a cat on a sofa")
    with pytest.raises(InvalidInput, match="caption"):
        portrait_from_caption("portrait of a girl with long red hair, smiling happily")


def test_training_data_holds_calm_single_and_mixed_faces_of_all_eight():
    portraits = list(sample_portraits(1234, 1500))
    kinds = np.bincount([len(p.state()) for p in portraits], minlength=4)
    assert kinds[0] > 40 and kinds[1] > 600 and kinds[2] > 300 and kinds[3] > 80
    assert {e for p in portraits for e in p.state()} == set(EMOTIONS)
    singles = [p.intensity for p in portraits if len(p.state()) == 1]
    assert min(singles) < 0.1 and max(singles) > 0.95


def test_bad_attributes_are_rejected_by_name():
    p = _portraits(1)[0]
    with pytest.raises(InvalidInput, match="hair_colour"):
        Portrait(**{**p.__dict__, "hair_colour": "plaid"})
    with pytest.raises(InvalidInput, match="intensity"):
        p.with_expression("joy", 1.5)
    with pytest.raises(InvalidInput, match="size"):
        render.render(p, size=60)


def test_held_out_identities_never_reach_training():
    everything = list(sample_portraits(1, 800, held_out=None))
    share = np.mean([is_held_out(p) for p in everything])
    assert 0.06 < share < 0.2
    source = PortraitSource(1, 300)
    assert not any(is_held_out(p) for p in source.portraits)
    train_keys = {p.identity_key() for p in source.portraits}
    assert not train_keys & {p.identity_key() for p in sample_portraits(2, 100, held_out=True)}
    image, caption = source[0]
    assert image.shape == (3, 64, 64) and -1 <= float(image.min()) and float(image.max()) <= 1
    assert caption == source.portraits[0].caption()


def test_tokenizer_keeps_caption_words_whole_and_spells_out_new_words(tmp_path):
    tok = build_tokenizer(tmp_path / "tok")
    assert tok.model_max_length == 77
    for word in caption_words():
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    cap = _portraits(1)[0].caption()
    ids = tok(cap).input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True).replace(" ,", ",") == cap
    new = tok("zebra <mira-token>", add_special_tokens=False).input_ids
    assert len(new) > 2 and tok.unk_token_id not in new or tok.unk_token_id == tok.eos_token_id and tok.eos_token_id not in new
    padded = tok(cap, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert padded.shape == (1, 77)


def test_extended_tokenizer_keeps_old_ids_and_makes_new_words_whole(tmp_path):
    old = build_tokenizer(tmp_path / "old", words=["portrait", "of", "a", "girl", "smiling", "happily", ","])
    added = extend_tokenizer(tmp_path / "old", tmp_path / "new")
    from transformers import CLIPTokenizer

    new = CLIPTokenizer.from_pretrained(str(tmp_path / "new"))
    assert len(new) == len(old) + len(added) and min(added) == len(old)
    assert new("portrait of a girl, smiling happily").input_ids == old("portrait of a girl, smiling happily").input_ids
    for word in caption_words():
        assert len(new(word, add_special_tokens=False).input_ids) == 1, word


@pytest.mark.parametrize(
    ("state", "named"),
    [
        ({}, {"neutral"}),
        ({"anger": 0.9, "disgust": 0.7}, {"anger"}),  # extremely anger, very disgust
        ({"anger": 0.7, "disgust": 0.75}, {"anger", "disgust"}),  # "very ... and very ...": a tie in words
        ({"joy": 0.45, "fear": 0.3, "trust": 0.55}, {"joy", "trust"}),
    ],
)
def test_the_strongest_emotion_a_caption_names_is_the_top_intensity_word(state, named):
    p = population.random_portrait(np.random.default_rng(0))
    first, *rest = state.items() or [("neutral", 0.0)]
    portrait = render.Portrait(**{**p.__dict__, "expression": first[0], "intensity": first[1], "blend": tuple(rest)})
    assert portrait.named_strongest == named
    assert portrait.dominant in named  # the hidden strongest is always among those the words name
