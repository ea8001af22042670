"""Emotion edits drawn by a few-step (LCM-style) student of the character's model
(`charforge.character.edits.fast_edit_latents`, measured by `charforge eval emotions --mode fast`).

On the tiny model with a tiny student built in code: the student shares the model's VAE, text encoder
and tokenizer and takes the guidance scale as an input (`time_cond_proj_dim`), as portrait-mini-fast does.
"""

from __future__ import annotations

from contextlib import contextmanager

import PIL.Image
import pytest
import torch
from conftest import save_tiny_lcm_student
from helpers.characters import make_character

from charforge.character import edits
from charforge.character.edits import FAST_STEPS, edit_mask, fast_edit_latents
from charforge.character.identity import character_model, load_identity
from charforge.emotion.conditioning import conditioning, expression_table
from charforge.engine import load_model, prepare_image
from charforge.engine.inversion import encode_mean
from charforge.errors import InvalidInput, NotFound
from charforge.models import default_model_path, fast_model_path, student_path


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return save_tiny_lcm_student(tmp_path_factory.mktemp("tiny-student"))


@pytest.fixture
def mira(forge_copy, tiny_model_dir):
    return forge_copy("feel-mira", lambda f: make_character(f, tiny_model_dir)).get("mira")


@contextmanager
def _unet_calls(*models):
    """UNet passes per model while the block runs (the models may be shared, cached ones)."""
    calls = [0] * len(models)
    hooks = [m.unet.register_forward_pre_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
             for k, m in enumerate(models)]  # fmt: skip
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.slow
def test_a_fast_edit_keeps_every_latent_outside_the_face_mask_and_changes_the_face(mira, student_dir):
    student = load_model(student_dir, device="cpu", dtype=torch.float32)
    identity = load_identity(mira, character_model(mira))
    table = expression_table()
    conds = [conditioning(s, mira.prompt, table) for s in ({"joy": 1.0}, {"sadness": 0.7, "fear": 0.4})]
    latents = fast_edit_latents(student, identity, conds, table)
    assert latents.shape[0] == 1 + len(conds)
    cells = edit_mask(student, identity, table).bool()
    assert 0 < cells.sum() < cells.numel()
    base = encode_mean(student, prepare_image(student, PIL.Image.fromarray(identity.base)))[0]
    for row in latents:
        assert torch.equal(row[:, ~cells], base[:, ~cells])  # outside: exactly the base CG's latent
    for row in latents[1:]:
        assert not torch.allclose(row[:, cells], latents[0][:, cells], atol=1e-3)  # inside: not the source


def test_a_fast_edits_feathered_edge_keeps_its_share_of_the_rings_change(mira, student_dir):
    student = load_model(student_dir, device="cpu", dtype=torch.float32)
    identity = load_identity(mira, character_model(mira))
    tables = {edge: expression_table({"edit": {"mask_dilation": 1, "mask_edge": edge}}) for edge in (1.0, 0.5)}
    soft = edit_mask(student, identity, tables[0.5])
    ring = (soft > 0) & (soft < 1)
    assert ring.any()
    conds = [conditioning({"anger": 1.0}, mira.prompt, tables[1.0])]
    hard, feathered = (fast_edit_latents(student, identity, conds, tables[e])[1] for e in (1.0, 0.5))
    base = encode_mean(student, prepare_image(student, PIL.Image.fromarray(identity.base)))[0]
    torch.testing.assert_close(feathered[:, soft == 1], hard[:, soft == 1])
    torch.testing.assert_close(feathered[:, ring] - base[:, ring], 0.5 * (hard[:, ring] - base[:, ring]))
    assert torch.equal(feathered[:, soft == 0], base[:, soft == 0])


def test_a_fast_edit_runs_the_student_once_per_step_and_never_the_teacher(mira, student_dir):
    teacher, student = character_model(mira), load_model(student_dir, device="cpu", dtype=torch.float32)
    identity = load_identity(mira, teacher)
    table = expression_table()
    conds = [conditioning(s, mira.prompt, table) for s in ({"anger": 0.9}, {"fear": 0.5})]
    with _unet_calls(teacher, student) as calls:
        fast_edit_latents(student, identity, conds, table)
    assert calls == [0, FAST_STEPS]  # one loop call, one UNet pass per step, the teacher never
    with pytest.raises(InvalidInput, match="not a few-step student"):
        fast_edit_latents(teacher, identity, conds, table)


def test_a_model_without_an_installed_student_is_one_clear_error(mira, cli, tiny_model_dir):
    assert student_path(mira.model_ref) is None  # a model of the user's own has no student
    with pytest.raises(NotFound, match="no few-step student is installed"):
        edits.student_of(mira.model_ref)
    for args in (["eval", "emotions", "--mode", "fast"], ["calibrate", "portrait-mini", "--fast"]):
        code, out, err = cli(*args, "--model", tiny_model_dir)
        assert code == 2 and "no few-step student is installed" in err and len(err.strip().splitlines()) == 1


def test_only_the_shipped_model_has_the_shipped_student(tmp_path):
    installed = (fast_model_path() / "model_index.json").is_file()
    expected = fast_model_path() if installed else None
    assert student_path(None) == student_path("charforge-mini") == student_path(default_model_path()) == expected
    assert student_path(tmp_path) is None and student_path("charforge-mini-fast") is None
