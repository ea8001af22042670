"""Words to attention-map columns: lookups, word-swap mapping, refinement alignment, emphasis syntax."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_tokenizer

from charforge.engine.attention import emphasis_weights, parse_emphasis, step_window, word_columns, word_schedule
from charforge.engine.attention.tokens import refinement_alignment, replacement_mapper
from charforge.errors import InvalidInput


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_word_columns_find_whole_words_only(tok):
    prompt = "a girl with red hair, red eyes"
    # columns: 1 a, 2 girl, 3 with, 4 red, 5 hair, 6 ",", 7 red, 8 eyes
    assert word_columns(tok, prompt, "red") == [4, 7]
    assert word_columns(tok, prompt, "red hair") == [4, 5]
    with pytest.raises(InvalidInput, match="'ha' does not occur"):
        word_columns(tok, prompt, "ha")  # a prefix of "hair" is a different token sequence


def test_replacement_mapper_is_identity_for_one_token_swaps(tok):
    mapper = replacement_mapper(tok, "a smiling girl", "a crying girl")
    assert torch.equal(mapper, torch.eye(77))


def test_replacement_mapper_spreads_a_longer_word_and_keeps_mass(tok):
    long_source, long_target = "a cat on a sofa", "a xyzzy on a sofa"
    mapper = replacement_mapper(tok, long_source, long_target)
    n_new = len(tok("xyzzy", add_special_tokens=False).input_ids)  # not in the tiny vocab: byte tokens
    assert n_new > 1
    torch.testing.assert_close(mapper[2, 2 : 2 + n_new], torch.full((n_new,), 1.0 / n_new))
    shift = n_new - 1  # the target is longer: that much trailing padding falls off the end
    sums = mapper.sum(dim=1)
    torch.testing.assert_close(sums[: 77 - shift], torch.ones(77 - shift))  # every other column's mass is kept
    assert sums[77 - shift :].sum() == 0
    # EOS follows EOS even though the target is longer
    eos_s, eos_t = len(tok(long_source).input_ids) - 1, len(tok(long_target).input_ids) - 1
    assert mapper[eos_s, eos_t] == 1.0
    with pytest.raises(InvalidInput, match="same number of words"):
        replacement_mapper(tok, "a girl", "a smiling girl")


def test_refinement_alignment_marks_added_tokens(tok):
    index, alpha = refinement_alignment(tok, "a girl with hair", "a smiling girl with long hair")
    # target columns: 1 a, 2 smiling, 3 girl, 4 with, 5 long, 6 hair, 7 EOS
    assert alpha[:8].tolist() == [1, 1, 0, 1, 1, 0, 1, 1]
    assert [int(index[c]) for c in (1, 3, 4, 6, 7)] == [1, 2, 3, 4, 5]


def test_emphasis_syntax():
    plain, segments = parse_emphasis("a (smiling:1.4) girl, ((red)) hair, [sad] \\(literal\\)")
    assert plain == "a smiling girl, red hair, sad (literal)"
    weights = {text.strip(" ,"): round(w, 4) for text, w in segments}
    assert weights["smiling"] == 1.4 and weights["red"] == round(1.1 * 1.1, 4) and weights["sad"] == round(1 / 1.1, 4)
    for bad in ("a (smiling girl", "a smiling) girl", "a [sad girl"):
        with pytest.raises(InvalidInput, match="bracket"):
            parse_emphasis(bad)


def test_emphasis_weights_land_on_the_right_columns(tok):
    plain, weights = emphasis_weights(tok, "a (smiling:1.4) girl with (red hair:0.5)")
    assert plain == "a smiling girl with red hair"
    expected = torch.ones(77)
    expected[2], expected[5], expected[6] = 1.4, 0.5, 0.5
    torch.testing.assert_close(weights, expected)


def test_step_schedules():
    assert step_window(0.5, 10).tolist() == [True] * 5 + [False] * 5
    assert step_window((0.2, 0.4), 10).nonzero().flatten().tolist() == [2, 3]
    with pytest.raises(InvalidInput):
        step_window(1.5, 10)
    tok = build_tiny_tokenizer()
    schedule = word_schedule({"default_": 0.8, "smiling": 0.2}, 10, tok, "a smiling girl")
    assert schedule[:, 2].tolist() == [1, 1] + [0] * 8 and schedule[:, 3].sum() == 8
