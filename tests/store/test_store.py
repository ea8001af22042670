"""Forge and Character: the persistent character API over SQLite and the asset folder."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
import torch

from charforge import Character, EmotionState, Forge
from charforge.errors import AlreadyExists, ConflictError, IntegrityError, InvalidInput, NotFound

PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background"


@pytest.fixture
def forge(any_forge):
    """The tests taking `forge` run on SQLite and on PostgreSQL."""
    return any_forge


def _sql(forge: Forge, statement: str, **params: object) -> list[tuple] | None:
    """Run raw SQL on the forge's database, behind the API's back (to inspect or damage it)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(forge.db.url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(r) for r in result.fetchall()] if result.returns_rows else None
    finally:
        engine.dispose()


def test_open_creates_the_workspace(tmp_path):
    root = tmp_path / "new" / "ws"
    with Forge.open(root) as forge:
        assert forge.db.current_revision() == forge.db.head_revision()
    assert (root / "charforge.db").is_file() and (root / "assets").is_dir()
    mode = sqlite3.connect(root / "charforge.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_create_get_list(forge):
    mira = forge.create("mira", prompt=PROMPT, seed=7, negative_prompt="blurry", model="some/model")
    assert (mira.name, mira.prompt, mira.seed, mira.negative_prompt, mira.model_ref) == (
        "mira", PROMPT, 7, "blurry", "some/model")
    assert mira.display_name == "Mira" and mira.version == 1
    forge.create("ann", prompt="portrait of a girl")
    got = forge.get("mira")
    assert got == mira and got.to_dict() == mira.to_dict()
    assert [c.name for c in forge.list()] == ["ann", "mira"]


def test_default_seed_is_stable_per_name(tmp_path):
    seeds = []
    for i in range(2):
        with Forge.open(tmp_path / f"ws{i}") as forge:
            seeds.append(forge.create("mira", prompt=PROMPT).seed)
    assert seeds[0] == seeds[1]
    with Forge.open(tmp_path / "ws0") as forge:
        assert forge.create("nell", prompt=PROMPT).seed != seeds[0]


def test_duplicate_and_invalid_names(forge):
    forge.create("mira", prompt=PROMPT)
    with pytest.raises(AlreadyExists):
        forge.create("mira", prompt="other")
    for bad in ["../mira", "Mira", "a/b", "", "x" * 65]:
        with pytest.raises(InvalidInput):
            forge.create(bad, prompt=PROMPT)
    with pytest.raises(NotFound):
        forge.get("nobody")
    with pytest.raises(InvalidInput):
        forge.get("../../etc/passwd")
    assert [c.name for c in forge.list()] == ["mira"]
    assert forge.get("mira").prompt == PROMPT


@pytest.mark.parametrize(
    "kwargs",
    [{"prompt": ""}, {"prompt": "   "}, {"prompt": "a\nb"}, {"seed": -1}, {"seed": 2**32}, {"seed": 1.5},
     {"settings": {"x": float("nan")}}, {"prompt": "x" * 2001}],
)
def test_invalid_fields_are_rejected(forge, kwargs):
    with pytest.raises(InvalidInput):
        forge.create("mira", **{"prompt": PROMPT, **kwargs})
    assert forge.list() == []


def test_rename_keeps_history_identity_and_assets(forge):
    mira = forge.create("mira", prompt=PROMPT)
    mira.record_emotion(EmotionState(joy=0.5))
    mira.store.put_identity("mask", {"m": torch.ones(4, 4)}, name="face")
    mira.store.add_asset(b"png", "cg", "0" * 64)
    forge.create("nell", prompt=PROMPT)
    with pytest.raises(AlreadyExists):
        forge.rename("mira", "nell")
    with pytest.raises(InvalidInput):
        forge.rename("mira", "../x")
    renamed = forge.rename("mira", "mirabel")
    with pytest.raises(NotFound):
        forge.get("mira")
    assert renamed.store.history()[0].state == EmotionState(joy=0.5)
    assert [a.kind for a in renamed.store.identity()] == ["mask"]
    assert len(renamed.store.assets()) == 1


def test_update_changes_definition_and_bumps_version(forge):
    mira = forge.create("mira", prompt=PROMPT)
    mira.update(prompt="portrait of a girl", seed=3, settings={"conditioning": {"joy": "grinning"}})
    again = forge.get("mira")
    assert (again.prompt, again.seed, again.settings, again.version) == (
        "portrait of a girl", 3, {"conditioning": {"joy": "grinning"}}, 2)


def test_stale_handle_gets_conflict_not_a_silent_overwrite(forge):
    forge.create("mira", prompt=PROMPT)
    a, b = forge.get("mira"), forge.get("mira")
    a.update(prompt="portrait of a girl with blue hair")
    with pytest.raises(ConflictError):
        b.update(prompt="portrait of a girl with green hair")
    with pytest.raises(ConflictError):
        b.store.put_identity("lora", {"w": torch.zeros(2)})
    with pytest.raises(ConflictError):
        b.rename("other")
    assert forge.get("mira").prompt == "portrait of a girl with blue hair"
    b.refresh().update(prompt="portrait of a girl with green hair")  # after refresh it goes through
    assert forge.get("mira").prompt == "portrait of a girl with green hair"


def test_appends_never_conflict_and_bump_the_version(forge):
    forge.create("mira", prompt=PROMPT)
    a, b = forge.get("mira"), forge.get("mira")
    ea = a.record_emotion({"joy": 0.3})
    eb = b.record_emotion({"anger": 0.6}, source="llm-tool")  # b's snapshot is stale; appends still work
    assert (ea.version, eb.version) == (2, 3)
    assert forge.get("mira").current_state() == EmotionState(anger=0.6)
    assert [(e.state, e.source) for e in a.store.history()] == [
        (EmotionState(joy=0.3), "api"), (EmotionState(anger=0.6), "llm-tool")]
    assert [e.state for e in a.store.history(limit=1)] == [EmotionState(anger=0.6)]
    with pytest.raises(InvalidInput):
        a.record_emotion({"joy": 0.3}, source="telepathy")
    with pytest.raises(InvalidInput):
        a.record_emotion({"joy": 3})
    assert a.store.history_count() == 2


def test_deleted_character_handles_fail_clearly(forge):
    mira = forge.create("mira", prompt=PROMPT)
    forge.delete("mira")
    with pytest.raises(NotFound, match="no longer exists"):
        mira.record_emotion({"joy": 0.3})
    with pytest.raises(NotFound):
        forge.delete("mira")


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e-45, 3.4e38])
    return {
        "latents": torch.randn(1, 4, 8, 8, generator=g),
        "embeddings": torch.randn(5, 77, 16, generator=g).to(torch.float16),
        "bf16": torch.randn(3, 3, generator=g).to(torch.bfloat16),
        "special": special,
        "steps": torch.arange(10, dtype=torch.int64),
        "mask": torch.rand(8, 8, generator=g) > 0.5,
        "strided": torch.randn(6, 4, generator=g).t(),  # non-contiguous view
    }


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


def test_identity_blob_round_trip_is_bit_exact(forge):
    mira = forge.create("mira", prompt=PROMPT)
    original = _tensors()
    info = mira.store.put_identity("inverted_latents", original, metadata={"method": "null_text", "steps": 50})
    art = mira.store.get_identity("inverted_latents")
    assert set(art.tensors) == set(original)
    for key, value in original.items():
        got = art.tensors[key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert _bits(got) == _bits(value), key
    assert art.metadata == {"method": "null_text", "steps": 50}
    assert art.sha256 == info.sha256
    [row] = _sql(forge, "SELECT data, sha256 FROM identity_artifacts")
    assert hashlib.sha256(bytes(row[0])).hexdigest() == row[1] == info.sha256


def test_corrupted_blob_raises_integrity_error(forge):
    mira = forge.create("mira", prompt=PROMPT)
    mira.store.put_identity("null_text_embeddings", {"e": torch.randn(4, 16)})
    data = bytearray(_sql(forge, "SELECT data FROM identity_artifacts")[0][0])
    data[-1] ^= 0x01  # one flipped bit in the tensor payload
    _sql(forge, "UPDATE identity_artifacts SET data = :data", data=bytes(data))
    with pytest.raises(IntegrityError, match="corrupted"):
        mira.store.get_identity("null_text_embeddings")


def test_identity_kinds_names_and_replacement(forge):
    mira = forge.create("mira", prompt=PROMPT)
    mira.store.put_identity("mask", {"m": torch.zeros(2, 2)}, name="face")
    mira.store.put_identity("mask", {"m": torch.ones(2, 2)}, name="hair")
    mira.store.put_identity("mask", {"m": torch.full((2, 2), 2.0)}, name="face")  # replaces
    assert [(a.kind, a.name) for a in mira.store.identity()] == [("mask", "face"), ("mask", "hair")]
    assert torch.equal(mira.store.get_identity("mask", name="face").tensors["m"], torch.full((2, 2), 2.0))
    with pytest.raises(InvalidInput):
        mira.store.put_identity("pickle", {"m": torch.zeros(1)})
    with pytest.raises(InvalidInput):
        mira.store.put_identity("mask", {"m": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        mira.store.put_identity("mask", {})
    with pytest.raises(NotFound):
        mira.store.get_identity("lora")
    from charforge.character.identity import identity_hash

    before = identity_hash(mira)
    assert mira.store.delete_identity("mask", name="hair") == 1
    assert identity_hash(mira) != before
    assert mira.store.delete_identity() == 1 and mira.store.identity() == []


def test_add_asset_is_content_addressed_and_cached_by_state(forge):
    mira = forge.create("mira", prompt=PROMPT)
    state = EmotionState(joy=0.8).canonical_hash()
    data = b"\x89PNG fake image bytes"
    asset = mira.store.add_asset(data, "cg", state, {"steps": 20})
    digest = hashlib.sha256(data).hexdigest()
    assert asset.path == forge.workspace.root / "assets" / "cg" / digest[:2] / f"{digest}.png"
    assert asset.path.read_bytes() == data and asset.read_bytes() == data
    assert mira.store.find_asset("cg", state) == asset
    assert mira.store.find_asset("bgm", state) is None
    # The same state again keeps the first asset (and leaves no stray file behind).
    again = mira.store.add_asset(b"other bytes", "cg", state)
    assert again == asset
    assert sorted(p.name for p in forge.workspace.assets_dir.rglob("*") if p.is_file()) == [f"{digest}.png"]
    wav = mira.store.add_asset(b"RIFF", "bgm", state)
    assert wav.path.suffix == ".wav"
    assert [a.kind for a in mira.store.assets()] == ["cg", "bgm"] and [a.kind for a in mira.store.assets("bgm")] == ["bgm"]
    for bad in [dict(kind="video"), dict(state_hash="not-a-hash"), dict(params={"x": object()})]:
        with pytest.raises(InvalidInput):
            mira.store.add_asset(data, **{"kind": "cg", "state_hash": state, **bad})


def test_lost_or_tampered_asset_files_are_detected_and_repaired(forge):
    mira = forge.create("mira", prompt=PROMPT)
    state = "1" * 64
    asset = mira.store.add_asset(b"image-v1", "cg", state)
    asset.path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        asset.read_bytes()
    asset.path.unlink()
    assert mira.store.find_asset("cg", state) is None  # a missing file is a cache miss, not a crash
    repaired = mira.store.add_asset(b"image-v2", "cg", state)
    assert repaired.read_bytes() == b"image-v2" and mira.store.find_asset("cg", state) == repaired


def test_delete_removes_blobs_rows_and_unshared_files(forge):
    mira, nell = forge.create("mira", prompt=PROMPT), forge.create("nell", prompt=PROMPT)
    mira.store.put_identity("inverted_latents", {"x": torch.randn(3)})
    mira.record_emotion({"joy": 0.4})
    own = mira.store.add_asset(b"mira only", "cg", "2" * 64)
    shared = mira.store.add_asset(b"same bytes", "cg", "3" * 64)
    nell_asset = nell.store.add_asset(b"same bytes", "cg", "4" * 64)
    assert nell_asset.path == shared.path
    job = forge.create_job("regenerate", character="mira")
    forge.delete("mira")
    assert not own.path.exists()
    assert shared.path.read_bytes() == b"same bytes"  # nell still uses that file
    counts = {t: _sql(forge, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("characters", "identity_artifacts", "emotion_history", "assets")}
    assert counts == {"characters": 1, "identity_artifacts": 0, "emotion_history": 0, "assets": 1}
    assert forge.get_job(job.id).character is None


def test_identity_builder_runs_on_create_and_failure_leaves_nothing(tmp_path):
    calls = []

    def builder(character: Character, options):
        calls.append((character.name, dict(options)))
        character.store.put_identity("inverted_latents", {"z": torch.zeros(2)}, metadata={"method": "ddim"})
        character.update(model_hash="a" * 64)

    with Forge.open(tmp_path, identity_builder=builder) as forge:
        mira = forge.create("mira", prompt=PROMPT, build_options={"steps": 10})
        assert calls == [("mira", {"steps": 10})]
        assert mira.model_hash == "a" * 64 and [a.kind for a in mira.store.identity()] == ["inverted_latents"]
        forge.create("plain", prompt=PROMPT, build_identity=False)
        assert len(calls) == 1

    def failing(character: Character, options):
        character.store.add_asset(b"half-rendered", "cg", "5" * 64)
        raise RuntimeError("model exploded")

    with Forge.open(tmp_path, identity_builder=failing) as forge:
        with pytest.raises(RuntimeError):
            forge.create("doomed", prompt=PROMPT)
        assert not forge.exists("doomed")
        digest = hashlib.sha256(b"half-rendered").hexdigest()
        assert not list(forge.workspace.assets_dir.rglob(f"{digest}*"))


def test_jobs(forge):
    forge.create("mira", prompt=PROMPT)
    job = forge.create_job("regenerate", {"kinds": ["cg"]}, character="mira")
    assert (job.status, job.progress, job.character) == ("queued", 0.0, "mira")
    forge.update_job(job.id, status="running", progress=0.5)
    done = forge.update_job(job.id, status="failed", progress=1.0, error="out of memory")
    assert (done.status, done.progress, done.error) == ("failed", 1.0, "out of memory")
    assert [j.id for j in forge.jobs("failed")] == [job.id] and forge.jobs("queued") == []
    for bad in [dict(status="exploded"), dict(progress=1.5)]:
        with pytest.raises(InvalidInput):
            forge.update_job(job.id, **bad)
    with pytest.raises(NotFound):
        forge.get_job(999)
    with pytest.raises(InvalidInput):
        forge.create_job("../x")
