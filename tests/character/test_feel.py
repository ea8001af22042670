"""Character.feel on the tiny model: state cache, masked edits, batching, history, and the emote/explain CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.characters import PROMPT, face_mask, forbid_model, make_character

from charforge.character.identity import character_model, load_identity
from charforge.emotion import EmotionState
from charforge.emotion.conditioning import conditioning, expression_table
from charforge.forge import Forge


@pytest.fixture
def mira(forge_copy, tiny_model_dir):
    """Mira with her identity and masks, copied from a workspace built once per session."""
    return forge_copy("feel-mira", lambda f: make_character(f, tiny_model_dir)).get("mira")


def test_second_feel_of_a_state_returns_the_stored_asset_without_the_model(mira, monkeypatch):
    first = mira.feel(joy=0.8)
    assert not first.cached and first.path.is_file()
    forbid_model(monkeypatch)
    again = mira.feel(joy=0.8)
    nearby = mira.feel(happy=0.81)  # an alias, and within the quantisation step
    assert again.cached and nearby.cached
    assert again.path == first.path == nearby.path and again.key == first.key
    assert len(mira.store.assets("cg")) == 1
    with pytest.raises(AssertionError, match="model was used"):
        mira.feel(joy=0.9)  # a new state does need the model


def test_cache_key_follows_state_identity_and_parameters(mira):
    table = expression_table()
    from charforge.character.feel import state_key

    def key(values, tbl=table):
        return state_key(mira, conditioning(values, mira.prompt, tbl), mira.model_hash, tbl)

    assert key({"joy": 0.8}) == key({"happy": 0.8}) == key({"joy": 0.81})
    assert len({key({"joy": 0.8}), key({"joy": 0.9}), key({"sadness": 0.8}), key({"joy": 0.8, "fear": 0.2})}) == 4
    other = expression_table({"edit": {"cross_replace": 0.7}})
    assert key({"joy": 0.8}, other) != key({"joy": 0.8})
    before = key({"joy": 0.8})
    mira.set_mask("face", np.flipud(face_mask(mira.store.get_identity("base_image").tensors["pixels"].shape[0])).copy())
    assert key({"joy": 0.8}) != before  # a new mask is a new identity


def test_edit_keeps_every_latent_outside_the_dilated_face_mask(mira):
    from charforge.character.edits import edit_latents, edit_mask

    model = character_model(mira)
    identity = load_identity(mira, model)
    table = expression_table()
    conds = [conditioning(s, mira.prompt, table) for s in ({"joy": 1.0}, {"sadness": 0.7, "fear": 0.4})]
    latents = edit_latents(model, identity, conds, table)
    cells = edit_mask(model, identity, table).bool()
    assert 0 < cells.sum() < cells.numel()
    base = identity.inversion.clean_latent[0]
    torch.testing.assert_close(latents[0], base)  # the source row ends on the base CG's latent
    for row in latents[1:]:
        assert torch.equal(row[:, ~cells], base[:, ~cells])  # outside: exactly the base
        assert not torch.allclose(row[:, cells], base[:, cells], atol=1e-3)  # inside: edited


def test_a_feathered_edge_keeps_its_share_of_the_rings_change_and_the_rest_as_drawn(mira):
    from charforge.character.edits import edit_latents, edit_mask

    model = character_model(mira)
    identity = load_identity(mira, model)
    base = identity.inversion.clean_latent[0]
    tables = {edge: expression_table({"edit": {"mask_dilation": 1, "mask_edge": edge}}) for edge in (1.0, 0.25)}
    soft = edit_mask(model, identity, tables[0.25])
    assert torch.equal(soft > 0, edit_mask(model, identity, tables[1.0]) > 0)
    ring, core = (soft > 0) & (soft < 1), soft == 1
    assert ring.any() and core.any()
    conds = [conditioning(s, mira.prompt, tables[1.0]) for s in ({"anger": 1.0}, {"joy": 0.5, "fear": 0.4})]
    hard_rows, soft_rows = (edit_latents(model, identity, conds, tables[e])[1:] for e in (1.0, 0.25))
    for hard, feathered in zip(hard_rows, soft_rows):
        assert torch.equal(feathered[:, soft == 0], base[:, soft == 0])  # outside: exactly the base
        torch.testing.assert_close(feathered[:, core], hard[:, core])  # the face: drawn as with a hard edge
        torch.testing.assert_close(feathered[:, ring] - base[:, ring], 0.25 * (hard[:, ring] - base[:, ring]))
        assert not torch.allclose(hard[:, ring], base[:, ring], atol=1e-3)  # the ring did change


def test_pixels_outside_the_dilated_face_mask_are_the_base_cgs(mira):
    from charforge.character.edits import edit_mask, pixel_mask

    model = character_model(mira)
    identity = load_identity(mira, model)
    outside = ~pixel_mask(edit_mask(model, identity, expression_table()), identity.base.shape[:2]).numpy()
    for state in ({"anger": 1.0}, {"joy": 0.5, "surprise": 0.4}):
        picture = np.asarray(mira.feel(state, record=False).image().convert("RGB"))
        assert np.array_equal(picture[outside], identity.base[outside])
        assert not np.array_equal(picture[~outside], identity.base[~outside])


def test_neutral_is_the_base_cg_itself(mira):
    result = mira.feel(record=False)
    base = mira.store.get_identity("base_image").tensors["pixels"].numpy()
    assert np.array_equal(np.asarray(result.image().convert("RGB")), base)
    assert result.conditioning.is_neutral and result.state == EmotionState()


@pytest.mark.slow
def test_batched_edits_match_single_edits(mira):
    from charforge.character.feel import feel_many, render_edits

    states = [{"anger": 0.9}, {"surprise": 0.6}, {"disgust": 1.0}]
    batched = feel_many(mira, states, batch=3)
    model = character_model(mira)
    identity = load_identity(mira, model)
    table = expression_table()
    for result, state in zip(batched, states):
        [alone] = render_edits(model, identity, [conditioning(state, mira.prompt, table)], table)
        picture = np.asarray(result.image().convert("RGB"), dtype=int)
        assert np.abs(picture - alone.astype(int)).max() <= 2


def test_a_mixture_is_conditioned_on_its_composed_prompt_never_an_average(mira, monkeypatch):
    """The targets handed to the one replay path are each state's one composed prompt (text, which replay
    encodes beside the source prompt), never a blend of embeddings."""
    from charforge.character import edits as edits_module

    seen = {}
    real = edits_module.replay

    def spy(model, inversion, targets, *args, **kwargs):
        seen["targets"] = list(targets)
        return real(model, inversion, targets, *args, **kwargs)

    monkeypatch.setattr(edits_module, "replay", spy)
    model = character_model(mira)
    identity = load_identity(mira, model)
    table = expression_table()
    conds = [conditioning({"anger": 0.5, "disgust": 0.5}, mira.prompt, table),
             conditioning({"joy": 0.6, "surprise": 0.4}, mira.prompt, table)]
    edits_module.edit_latents(model, identity, conds, table)
    assert seen["targets"] == [c.target_prompt for c in conds]
    assert conds[0].target_prompt.endswith("moderately grimacing disgustedly and moderately frowning angrily")


def test_feel_records_the_state_unless_told_not_to(mira):
    mira.feel(sadness=0.6)
    mira.feel(joy=0.4, record=False)
    assert [e.state for e in mira.store.history()] == [EmotionState(sadness=0.6)]
    assert mira.refresh().current_state() == EmotionState(sadness=0.6)


@pytest.mark.slow
def test_feel_builds_a_missing_identity_first(forge, tiny_model_dir):
    plain = forge.create("plain", prompt=PROMPT, seed=3, model=str(tiny_model_dir), build_identity=False,
                         settings={"identity": {"steps": 2}})
    assert plain.store.identity() == []
    result = plain.feel(fear=0.7, record=False)
    assert result.path.is_file() and {a.kind for a in plain.store.identity()} >= {"base_image", "inverted_latents"}


def test_feel_rejects_bad_states_before_touching_anything(mira):
    for bad in ({"joy": 1.5}, {"glee": 0.3}, {"joy": float("nan")}):
        with pytest.raises(ValueError):
            mira.feel(bad)
    with pytest.raises(ValueError, match="not both"):
        mira.feel({"joy": 0.5}, fear=0.2)
    assert mira.store.assets("cg") == [] and mira.store.history() == []


# CLI ------------------------------------------------------------------------------------------------------


def test_emote_renders_and_prints_the_asset_path(mira, cli):
    ws = str(mira.store.workspace.root)
    code, out, err = cli("emote", "mira", "joy=0.8", "fear=0.2", "-w", ws)
    assert code == 0, err
    path = out.strip().splitlines()[-1]
    assert path.endswith(".png") and mira.store.find_asset("cg", mira.store.assets("cg")[0].state_hash).path.as_posix() == path
    code, out, err = cli("emote", "mira", "happy=0.81", "fear=0.2", "--json", "-w", ws)
    data = json.loads(out)
    assert code == 0 and data["path"] == path and data["cached"] is True
    assert data["state"] == {"joy": 0.81, "fear": 0.2} and data["rendered_state"] == {"joy": 0.8, "fear": 0.2}
    assert data["hash"] == mira.store.assets("cg")[0].state_hash and data["source"] == "cli"


def test_emote_no_render_only_records(mira, cli):
    code, out, err = cli("emote", "mira", "sadness=0.5", "--no-render", "--json", "-w", str(mira.store.workspace.root))
    assert code == 0 and "path" not in json.loads(out) and mira.store.assets("cg") == []


def test_explain_shows_phrases_and_weights(mira, cli):
    ws = str(mira.store.workspace.root)
    code, out, err = cli("explain", "mira", "joy=0.8", "fear=0.2", "-w", ws)
    assert code == 0 and "smiling happily" in out and "trembling fearfully" in out
    data = json.loads(cli("explain", "mira", "joy=0.8", "fear=0.2", "--json", "-w", ws)[1])
    assert data["requested"] == {"joy": 0.8, "fear": 0.2}
    assert data["target_prompt"].endswith(", very smiling happily and faintly trembling fearfully")
    assert mira.store.assets("cg") == []  # explaining renders nothing


BAD = [
    (["emote", "mira", "glee=0.5"], "unknown emotion 'glee'"),
    (["emote", "mira"], "EMOTION=INTENSITY"),
    (["explain", "mira", "joy=2"], "within [0, 1]"),
    (["explain", "nobody", "joy=0.2"], "no character named 'nobody'"),
    (["mask", "mira", "face"], "exactly one of --from"),
    (["mask", "mira", "Face!", "--out", "x.png"], "invalid character name"),
    (["mask", "mira", "face", "--from", "no-such.png"], "not found"),
    (["mask", "mira", "wings", "--out", "x.png"], "no 'wings' mask"),
    (["reinvert", "nobody"], "no character named 'nobody'"),
    (["reinvert", "mira", "--method", "magic"], "unknown --method"),
    (["inpaint", "mira", "--region", "outfit"], "--prompt"),
    (["inpaint", "mira", "--prompt", "red outfit"], "exactly one of --region"),
    (["inpaint", "mira", "--region", "wings", "--prompt", "red wings"], "no 'wings' mask"),
    (["inpaint", "mira", "--region", "outfit", "--prompt", "red outfit", "--strength", "0"], "--strength"),
]


@pytest.fixture(scope="module")
def untouched(tmp_path_factory, tiny_model_dir):
    """One character shared by the bad-input cases: each must leave it exactly as it was."""
    with Forge.open(tmp_path_factory.mktemp("bad") / "ws") as f:
        yield make_character(f, tiny_model_dir)


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(untouched, cli, args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mira = untouched
    ws = mira.store.workspace.root
    before = (mira.refresh().version, sorted(ws.rglob("*")))
    code, out, err = cli(*args, "-w", str(ws))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err
    assert (mira.refresh().version, sorted(ws.rglob("*"))) == before
