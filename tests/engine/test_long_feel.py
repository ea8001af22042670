"""`Character.feel` for a character whose base prompt is longer than 77 tokens: its expression phrase
lies in the second prompt chunk, and the emotion edit must still weight it (it used to be drawn
unweighted with a warning, because attention control knew only the first chunk)."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import TINY_WORDS, build_tiny_tokenizer
from helpers.characters import make_character

from charforge.character.edits import edit_latents
from charforge.character.identity import character_model, load_identity
from charforge.emotion.conditioning import conditioning, expression_table
from charforge.engine.attention import Reweight, word_columns
from charforge.engine.attention.tokens import chunk_count

_TOKENIZER = build_tiny_tokenizer()
_FILLER = [w for w in TINY_WORDS if len(_TOKENIZER(w, add_special_tokens=False).input_ids) == 1 and w != "calm"]
# 80 filler tokens, then the description and the neutral phrase the expression replaces
PROMPT = " ".join(_FILLER[i % len(_FILLER)] for i in range(80)) + ", a girl with red hair, looking calm"
WEIGHT = 3.0


@pytest.fixture
def mira(forge, tiny_model_dir):
    return make_character(forge, tiny_model_dir, prompt=PROMPT)


def test_the_prompt_puts_the_expression_in_the_second_chunk():
    assert chunk_count(_TOKENIZER, PROMPT) == 2
    assert min(word_columns(_TOKENIZER, PROMPT, "looking calm")) > 77


@pytest.mark.slow
def test_an_expression_past_token_77_is_weighted(mira, caplog, monkeypatch):
    model = character_model(mira)
    identity = load_identity(mira, model)
    table = expression_table()
    strong = table.model_copy(update={"attention": table.attention.model_copy(update={"default": WEIGHT})})
    built: list[Reweight] = []

    class Recorded(Reweight):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr("charforge.character.edits.Reweight", Recorded)
    latents = {}
    with caplog.at_level(logging.WARNING, logger="charforge"):
        for name, t in (("plain", table), ("strong", strong)):
            cond = conditioning({"joy": 1.0}, mira.prompt, t)
            latents[name] = edit_latents(model, identity, [cond], t)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    [(words, weight)] = cond.token_weights().items()
    columns = word_columns(model.tokenizer, cond.target_prompt, words)
    assert weight == WEIGHT and min(columns) >= 77  # the expression is in the second chunk
    row = built[-1].weights[1]
    assert row.shape == (154,) and torch.equal(row[columns], torch.full((len(columns),), WEIGHT))
    assert int((row != 1).sum()) == len(columns)  # nothing else weighted
    torch.testing.assert_close(latents["strong"][0], latents["plain"][0])  # the source holds the base CG
    assert (latents["strong"][1] - latents["plain"][1]).abs().max() > 1e-3  # the weight took effect

    joy = mira.feel(joy=1.0)  # and the whole verb runs on the long prompt
    assert joy.path.is_file() and not joy.cached
