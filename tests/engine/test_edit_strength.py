"""Edit strength on a tiny model: 0 redraws the source exactly, 1 is the plain edit, the change grows
with the strength, a composed group is one picture equal to its lone non-zero member, and a negative
strength draws away from its prompt."""

from __future__ import annotations

import pytest
import torch
from helpers.smooth import PROMPT, smooth_tiny_model

from charforge.engine.attention import Replace
from charforge.engine.edit import replay
from charforge.engine.edit_strength import EditStrength
from charforge.engine.inversion import invert_latent
from charforge.errors import InvalidInput

TARGET = "a portrait of a crying girl with red hair"
OTHER = "a portrait of a smiling girl with red hair"
STEPS = 8


@pytest.fixture(scope="module")
def model():
    return smooth_tiny_model()


@pytest.fixture(scope="module", params=["direct", "negative-prompt"])
def inversion(request, model):
    coarse = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    latent = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear")
    return invert_latent(model, latent / latent.std(), PROMPT, request.param, steps=STEPS, guidance=7.5, inner_steps=2)


def _edit(model, inversion, targets, groups=None):
    control = Replace(model.tokenizer, PROMPT, targets, cross_replace_steps=0.6, self_replace_steps=0.4)
    hooks = [EditStrength(inversion.trajectory, groups)] if groups is not None else []
    return replay(model, inversion, targets, [control], hooks=hooks)


@pytest.mark.slow
def test_strength_zero_redraws_the_source_and_one_is_the_plain_edit(model, inversion):
    source_final = inversion.trajectory[-1:]
    zero = _edit(model, inversion, [TARGET], [{1: 0.0}])
    torch.testing.assert_close(zero[1:], source_final, atol=1e-5, rtol=1e-5)
    plain = _edit(model, inversion, [TARGET])
    assert (plain[1:] - source_final).abs().max() > 1e-2  # the edit does change the picture
    torch.testing.assert_close(_edit(model, inversion, [TARGET], [{1: 1.0}]), plain, atol=0, rtol=0)


@pytest.mark.slow
def test_the_change_grows_with_the_strength(model, inversion):
    strengths = [0.1, 0.4, 0.7, 1.0, 1.5]
    latents = _edit(model, inversion, [TARGET] * len(strengths), [{k + 1: s} for k, s in enumerate(strengths)])
    change = [float((latents[k + 1] - inversion.trajectory[-1]).norm()) for k in range(len(strengths))]
    assert all(a < b for a, b in zip(change, change[1:])), change


@pytest.mark.slow
def test_a_composed_group_is_one_picture_equal_to_its_only_active_member(model, inversion):
    group = _edit(model, inversion, [OTHER, TARGET], [{1: 0.0, 2: 0.6}])
    torch.testing.assert_close(group[1], group[2], atol=0, rtol=0)
    alone = _edit(model, inversion, [TARGET], [{1: 0.6}])
    torch.testing.assert_close(group[2], alone[1], atol=1e-5, rtol=1e-5)
    both = _edit(model, inversion, [OTHER, TARGET], [{1: 0.6, 2: 0.6}])
    assert (both[1] - alone[1]).abs().max() > 1e-3  # the second emotion adds its own change


def test_bad_strengths_are_refused():
    trajectory = torch.zeros(3, 4, 8, 8)
    for groups in ([{0: 0.5}], [{1: 0.5}, {1: 0.2}], [{1: float("nan")}], [{1: -9.0}], [{1: 9.0}]):
        with pytest.raises(InvalidInput):
            EditStrength(trajectory, groups)


def test_a_strength_map_changes_only_where_it_is_not_zero(model, inversion):
    h, w = inversion.x_T.shape[-2:]
    top_only = torch.zeros(h, w)
    top_only[: h // 2] = 0.8
    latents = _edit(model, inversion, [TARGET], [{1: top_only}])
    source = inversion.trajectory[-1]
    torch.testing.assert_close(latents[1, :, h // 2 :], source[:, h // 2 :], atol=1e-5, rtol=1e-5)
    assert (latents[1, :, : h // 2] - source[:, : h // 2]).abs().max() > 1e-3
    with pytest.raises(InvalidInput):
        EditStrength(inversion.trajectory, [{1: torch.full((h, w), float("nan"))}])


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["ddim", "lcm"])
def test_without_a_trajectory_the_source_rows_own_prediction_is_the_reference(model, scheduler):
    """A few-step student's edit denoises its source afresh: strength 0 then draws the source row itself
    (rows share their noise, also the fresh noise an LCM step adds), 1 the plain prompt."""
    from charforge.engine import txt2img

    def draw(hooks=()):
        return txt2img(model, [PROMPT, TARGET], seed=4, steps=4, guidance=5.0, scheduler=scheduler, hooks=hooks).latents

    plain = draw()
    assert (plain[1] - plain[0]).abs().max() > 1e-2
    zero = draw([EditStrength(None, [{1: 0.0}])])
    torch.testing.assert_close(zero[1], zero[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(zero[0], plain[0], atol=0, rtol=0)  # the source row is never touched
    torch.testing.assert_close(draw([EditStrength(None, [{1: 1.0}])]), plain, atol=0, rtol=0)
    half = draw([EditStrength(None, [{1: 0.5}])])
    assert 0 < (half[1] - plain[0]).abs().max() < (plain[1] - plain[0]).abs().max()


@pytest.mark.slow
def test_a_negative_strength_draws_away_from_its_prompt(model, inversion):
    source_final = inversion.trajectory[-1]
    cancelled = _edit(model, inversion, [TARGET, TARGET], [{1: 0.7, 2: -0.7}])  # a change minus itself
    torch.testing.assert_close(cancelled[1], source_final, atol=1e-5, rtol=1e-5)
    towards, away = _edit(model, inversion, [TARGET, TARGET], [{1: 0.5}, {2: -0.5}])[1:]
    cosine = torch.nn.functional.cosine_similarity((towards - source_final).flatten(), (away - source_final).flatten(), 0)
    assert cosine < -0.5, float(cosine)
