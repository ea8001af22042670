"""Character cards: the sample cast validates, speaks the default model's vocabulary, and bad cards are named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from charforge.cards import CharacterCard, load_cards
from charforge.errors import InvalidInput

CAST = Path(__file__).resolve().parents[2] / "characters"


def test_sample_cast_loads():
    cards = load_cards(CAST)
    assert len(cards) >= 3
    assert {p.suffix for p, _ in cards} >= {".toml", ".yaml"}  # both formats are exercised
    assert len({c.resolved_seed() for _, c in cards}) == len(cards)


def test_sample_prompts_use_the_mini_model_vocabulary():
    render = pytest.importorskip("charforge.recipes.portrait_mini.render")
    alt = lambda words: "|".join(map(re.escape, words))  # noqa: E731
    pattern = re.compile(
        rf"portrait of a girl with ({alt(render.HAIR_STYLES)}) ({alt(render.HAIR_COLOURS)}) hair, "
        rf"({alt(render.EYE_COLOURS)}) eyes, ({alt(render.SKIN_TONES)}) skin, ({alt(render.OUTFIT_COLOURS)}) outfit, "
        rf"({alt(render.BACKGROUND_COLOURS)}) background, (wearing glasses, |wearing a hat, )?"
        rf"({alt(render.EXPRESSIONS.values())})"
    )
    for path, card in load_cards(CAST):
        assert pattern.fullmatch(card.prompt), f"{path.name}: {card.prompt}"
        assert card.prompt.endswith(render.EXPRESSIONS["neutral"]), path.name  # the base CG is calm


@pytest.mark.parametrize(
    ("filename", "text", "fragment"),
    [
        ("a.toml", 'name = "a"\nprompt = ', "not valid TOML"),
        ("a.yaml", "name: [unclosed", "not valid YAML"),
        ("a.yaml", "- just\n- a list\n", "must be a table"),
        ("a.toml", 'name = "../a"\nprompt = "x"\n', "invalid character name"),
        ("a.toml", 'name = "a"\n', "prompt"),
        ("a.toml", 'name = "a"\nprompt = "x"\ncolour = "red"\n', "colour"),
        ("a.toml", 'name = "a"\nprompt = "x"\nseed = -3\n', "seed"),
    ],
)
def test_bad_cards_name_the_file_and_the_problem(tmp_path, filename, text, fragment):
    (tmp_path / filename).write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_cards(tmp_path)
    message = str(info.value)
    assert filename in message and fragment in message and "\n" not in message


def test_duplicate_names_across_cards(tmp_path):
    (tmp_path / "a.toml").write_text('name = "ann"\nprompt = "x"\n')
    (tmp_path / "b.yaml").write_text("name: ann\nprompt: y\n")
    with pytest.raises(InvalidInput, match="both define 'ann'"):
        load_cards(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(InvalidInput, match="no character cards"):
        load_cards(tmp_path)


def test_card_defaults():
    card = CharacterCard.build(name="old-tom_2", prompt="portrait of a man")
    assert card.resolved_display_name() == "Old Tom 2"
    assert card.resolved_seed() == CharacterCard.build(name="old-tom_2", prompt="other").resolved_seed()
