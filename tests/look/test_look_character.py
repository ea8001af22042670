"""A character's look on the tiny model: stored as identity artifacts, worn only while that character is
drawn, part of its identity hash, exported and imported bit-exactly, and driven from the CLI."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from charforge.character.identity import build_identity, character_model, check_fresh, identity_hash
from charforge.character.look import export_look, import_look, learn_lora, learn_token
from charforge.engine.adapters import worn_key
from charforge.errors import InvalidInput, StaleIdentity
from charforge.store.models import IdentityKind

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"


def _character(forge, model_dir, name):
    character = forge.create(name, prompt=PROMPT, seed=7, model=str(model_dir), build_identity=False)
    build_identity(character, {"steps": 3})
    return character


@pytest.fixture
def forge(forge_copy, tiny_model_dir):
    """A workspace holding mira with her identity (a copy of one built once per session)."""
    return forge_copy("look-mira", lambda f: _character(f, tiny_model_dir, "mira"))


@pytest.fixture
def mira(forge):
    return forge.get("mira")


@pytest.mark.slow
def test_a_learnt_token_changes_the_identity_hash_and_is_stale_until_reinverted(mira):
    before = identity_hash(mira)
    result = learn_token(mira, steps=2, vectors=2)
    assert result.artifact.metadata["token"] == "<mira>" and result.steps == 2
    assert identity_hash(mira) != before
    with pytest.raises(StaleIdentity, match="look"):
        check_fresh(mira, mira.model_hash)
    with pytest.raises(StaleIdentity):
        mira.feel(joy=0.8)
    mira.reinvert()
    check_fresh(mira, mira.model_hash)  # rebuilt with the look on
    assert mira.store.get_identity(IdentityKind.INVERTED_LATENTS).metadata["look"]


@pytest.mark.slow
def test_lora_strength_is_part_of_the_identity(mira, tmp_path):
    learn_lora(mira, steps=2, rank=2)
    out = export_look(mira, "lora", tmp_path / "look.safetensors")
    first = identity_hash(mira)
    import_look(mira, out, strength=0.5)
    assert identity_hash(mira) != first


@pytest.mark.slow
def test_export_then_import_is_bit_exact(forge, tiny_model_dir, mira, tmp_path):
    learn_token(mira, steps=2, vectors=2, token="<mi>")
    learn_lora(mira, steps=2, rank=2)
    token_file = export_look(mira, "token", tmp_path / "learned_embeds.safetensors")
    lora_file = export_look(mira, "lora", tmp_path / "pytorch_lora_weights.safetensors")
    nell = forge.create("nell", prompt=PROMPT, seed=8, model=str(tiny_model_dir), build_identity=False)
    assert import_look(nell, token_file).metadata["token"] == "<mi>"
    import_look(nell, lora_file, strength=0.7)
    for kind in (IdentityKind.TEXTUAL_INVERSION, IdentityKind.LORA):
        ours, theirs = mira.store.get_identity(kind), nell.store.get_identity(kind)
        assert ours.sha256 == theirs.sha256
        assert all(torch.equal(ours.tensors[k], theirs.tensors[k]) for k in ours.tensors)
    again = export_look(nell, "lora", tmp_path / "again.safetensors")
    assert again.read_bytes() == lora_file.read_bytes()


@pytest.mark.slow
def test_characters_sharing_the_model_wear_only_their_own_look(forge, tiny_model_dir, mira):
    plain = _character(forge, tiny_model_dir, "plain")
    model = character_model(plain)
    length, table = len(model.tokenizer), model.text_encoder.get_input_embeddings().weight.detach().clone()
    learn_token(mira, steps=2, vectors=3)
    learn_lora(mira, steps=2, rank=2)
    worn = character_model(mira)
    assert worn is model and worn_key(model) is not None and len(model.tokenizer) == length + 3
    character_model(plain)
    assert worn_key(model) is None and len(model.tokenizer) == length
    assert torch.equal(model.text_encoder.get_input_embeddings().weight, table)
    assert not getattr(model.unet, "peft_config", None)


def test_imports_that_do_not_fit_are_refused_and_store_nothing(mira, tmp_path):
    save_file({"<wide>": torch.zeros(2, 64)}, str(tmp_path / "wide.safetensors"))
    torch.save({"<x>": torch.zeros(1, 32)}, tmp_path / "emb.pt")
    listing = [(a.kind, a.sha256) for a in mira.store.identity()]
    with pytest.raises(InvalidInput):
        import_look(mira, tmp_path / "wide.safetensors")
    with pytest.raises(InvalidInput, match="pickle"):
        import_look(mira, tmp_path / "emb.pt")
    assert [(a.kind, a.sha256) for a in mira.store.identity()] == listing


def test_cli_learn_export_import(mira, forge, tiny_model_dir, cli, tmp_path):
    ws = mira.store.workspace.root
    code, out, err = cli("learn", "mira", "--token", "--steps", "2", "--vectors", "1", "--workspace", ws)
    assert code == 0 and "learnt token <mira>" in out, err
    target = tmp_path / "mira.safetensors"
    code, out, err = cli("export-look", "mira", "--token", "--out", target, "--workspace", ws)
    assert code == 0 and target.is_file(), err
    forge.create("ivy", prompt=PROMPT, seed=9, model=str(tiny_model_dir), build_identity=False)
    code, out, err = cli("import-look", "ivy", target, "--as", "<ivy>", "--workspace", ws)
    assert code == 0 and "<ivy>" in out, err


@pytest.mark.slow
def test_cli_learn_lora_takes_the_library_rank_unless_given(mira, cli):
    from charforge.engine.adapters import LORA_RANK

    ws = mira.store.workspace.root
    code, out, err = cli("learn", "mira", "--lora", "--steps", "1", "--workspace", ws)
    assert code == 0 and f"learnt rank-{LORA_RANK} LoRA in 1 steps" in out, err
    code, out, err = cli("learn", "mira", "--lora", "--steps", "1", "--rank", "2", "--workspace", ws)
    assert code == 0 and "learnt rank-2 LoRA" in out, err
    assert mira.store.get_identity(IdentityKind.LORA).metadata["rank"] == 2


@pytest.fixture(scope="module")
def untouched(tmp_path_factory, tiny_model_dir):
    """A workspace with a character "mira" without identity: bad input must fail before anything runs."""
    from charforge.forge import Forge

    root = tmp_path_factory.mktemp("ws")
    with Forge.open(root) as forge:
        forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_identity=False)
    return root


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("learn", "mira"), "exactly one of --token and --lora"),
        (("learn", "mira", "--token", "--lora"), "exactly one of --token and --lora"),
        (("learn", "mira", "--token", "--as", "two words"), "bad token"),
        (("export-look", "mira", "--lora"), "--out"),
        (("export-look", "mira", "--lora", "--out", "x.bin"), ".safetensors"),
        (("import-look", "mira", "emb.pt"), "pickle"),
        (("import-look", "mira", "missing.safetensors"), "not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(untouched, cli, args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"<x>": torch.zeros(1, 32)}, tmp_path / "emb.pt")
    code, out, err = cli(*args, "--workspace", untouched)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_cards_bring_their_look_files_and_bad_ones_are_refused_at_import(forge, tiny_model_dir, tmp_path, cli):
    from charforge.engine.adapters import write_embedding

    cards = tmp_path / "cards"
    cards.mkdir()
    write_embedding(cards / "star.safetensors", "<star>", torch.randn(2, 32) * 0.01)
    model = f'model = "{tiny_model_dir}"\n'
    (cards / "star.toml").write_text(
        f'name = "star"\nprompt = "{PROMPT}"\nseed = 3\n{model}[look]\nembedding = "star.safetensors"\n'
    )
    code, out, err = cli("import", cards, "--workspace", tmp_path / "ws2")
    assert code == 0, err
    from charforge.forge import Forge

    with Forge.open(tmp_path / "ws2") as other:
        art = other.get("star").store.get_identity(IdentityKind.TEXTUAL_INVERSION)
        assert art.metadata["token"] == "<star>" and art.tensors["vectors"].shape == (2, 32)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pick.toml").write_text(f'name = "pick"\nprompt = "{PROMPT}"\n{model}[look]\nlora = "missing.safetensors"\n')
    code, out, err = cli("import", bad, "--workspace", tmp_path / "ws3")
    assert code == 2 and "not found" in err and len(err.strip().splitlines()) == 1, err
    (bad / "pick.toml").write_text(f'name = "pick"\nprompt = "{PROMPT}"\n[look]\nlora = "x.pt"\n')
    code, out, err = cli("import", bad, "--workspace", tmp_path / "ws3")
    assert code == 2 and "safetensors" in err, err
