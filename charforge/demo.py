"""The main job a new user runs first: bring in the sample cast and show its emotion sweep as a contact sheet.

It exercises the whole stack (store, shipped model, engine) on a fresh machine with no network, so it
doubles as the smoke test a person can look at.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from charforge.cards import CharacterCard, load_cards
from charforge.character.feel import feel_many
from charforge.character.handle import Character
from charforge.character.identity import (
    build_identity,
    check_fresh,
    current_model_hash,
    has_identity,
    reinvert,
)
from charforge.contact_sheet import contact_sheet
from charforge.emotion import BASIS
from charforge.engine import cached_model
from charforge.errors import AlreadyExists, StaleIdentity
from charforge.forge import Forge
from charforge.models import check_model_ref
from charforge.progress import progress as progress_bar

log = logging.getLogger(__name__)

SHEET_PATH = "demo/contact-sheet.png"
# Steps of the base CGs, inversions and edits: the whole sweep of the sample cast (4 characters x
# 17 pictures) must finish in under 3 minutes on 2 CPU cores with charforge-mini.
DEFAULT_STEPS = 20


# Each character's music for two contrasting moods (bright and excited vs. sad and subdued).
MUSIC_STATES: tuple[tuple[str, dict[str, float]], ...] = (("joy", {"joy": 0.9}), ("sadness", {"sadness": 0.9}))
MUSIC_SECONDS = 5.9  # one spectrogram tile of the mini preset (5.94 s): the demo stays under 3 minutes
MUSIC_DIR = "demo/bgm"


@dataclass
class DemoResult:
    sheet: Path
    imported: list[str]
    characters: list[str]
    music: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # sample names taken by the user's own characters


def cast_dir() -> Path:
    """The sample cast shipped inside the package (the repository's characters/ links here)."""
    return Path(str(resources.files("charforge") / "cast"))


def _is_sample(character: Character, card: CharacterCard) -> bool:
    """Whether an existing character is the demo's own (the sample card's definition, any model)."""
    return (character.prompt, character.negative_prompt, character.seed, character.display_name) == (
        card.prompt, card.negative_prompt, card.resolved_seed(), card.resolved_display_name()
    )


def import_cast(forge: Forge, model_ref: str | None = None) -> tuple[list[str], list[str], list[str]]:
    """Create the sample cast's characters the workspace does not have yet (drawn with `model_ref` if
    given); sample characters imported earlier are switched to `model_ref`. A character of the user's
    that happens to carry a sample name is never touched: it is skipped.

    Returns (cast used by the demo, names created now, names skipped).
    """
    cast, created, skipped = [], [], []
    for _, card in load_cards(cast_dir()):
        if not forge.exists(card.name):
            card = card.model_copy(update={"model": model_ref}) if model_ref is not None else card
            forge.create_from_card(card, build_identity=False)
            created.append(card.name)
        elif not _is_sample(existing := forge.get(card.name), card):
            log.info("skipping %s: the workspace has its own character of that name", card.name)
            skipped.append(card.name)
            continue
        elif model_ref is not None and existing.model_ref != model_ref:
            existing.update(model=model_ref)
        cast.append(card.name)
    return cast, created, skipped


SWEEP_INTENSITIES = (0.3, 0.6, 1.0)
# mixtures the contact sheet shows after the graded rows: each part of the face takes its own emotion
SWEEP_MIXTURES: tuple[dict[str, float], ...] = (
    {"anger": 0.5, "disgust": 0.5}, {"joy": 0.6, "surprise": 0.4}, {"sadness": 0.6, "fear": 0.5},
)


def sweep_states() -> list[tuple[str, dict[str, float]]]:
    """(label, state): neutral, every basis emotion at each sweep intensity, then a few mixtures."""
    states = [("base", {})]
    for name in BASIS:
        for value in SWEEP_INTENSITIES:
            states.append((f"{name} {value:g}", {name: value}))
    for mix in SWEEP_MIXTURES:
        states.append((" + ".join(f"{k} {v:g}" for k, v in mix.items()), dict(mix)))
    return states


def ensure_identity(character: Character, steps: int) -> None:
    """Build the identity if missing; redraw it from prompt and seed if the model changed since."""
    if not has_identity(character):
        build_identity(character, {"steps": steps})
        return
    try:
        check_fresh(character, current_model_hash(character))
    except StaleIdentity as exc:
        log.info("%s; redrawing the sample character", exc)
        reinvert(character, rerender=True, steps=steps)


def write_music(forge: Forge, character: Character, *, bgm_model: str | None = None) -> list[Path]:
    """The character's BGM for MUSIC_STATES, cached as assets and copied to demo/bgm/NAME-STATE.wav."""
    from charforge.character.bgm import bgm

    if bgm_model is not None and character.settings.get("music", {}).get("model") != bgm_model:
        music = {**character.settings.get("music", {}), "model": bgm_model}
        character.update(settings={**character.settings, "music": music})
    paths = []
    for label, state in MUSIC_STATES:
        result = bgm(character, state, seconds=MUSIC_SECONDS)
        paths.append(forge.workspace.write_atomic(f"{MUSIC_DIR}/{character.name}-{label}.wav",
                                                  result.asset.read_bytes()))
    return paths


def run_demo(forge: Forge, *, model_ref: str | None = None, steps: int = DEFAULT_STEPS, music: bool = True,
             bgm_model: str | None = None) -> DemoResult:
    """Import the sample cast, render each character's emotion sweep into a labelled contact sheet and
    (with `music`) its BGM for two contrasting moods.

    Everything is cached per state, so a second run only reassembles the sheet. With `model_ref`
    (`bgm_model`), the sample characters are drawn (scored) with that model instead of the default one.
    """
    from PIL import Image

    # Everything that can fail on bad input is checked and loaded before the first write.
    check_model_ref(model_ref)
    cached_model(model_ref)
    if music and bgm_model is not None:
        check_model_ref(bgm_model)
    cards = load_cards(cast_dir())
    taken = [c.name for _, c in cards if forge.exists(c.name) and not _is_sample(forge.get(c.name), c)]
    if len(taken) == len(cards):
        raise AlreadyExists(
            f"every sample name ({', '.join(taken)}) belongs to a character of this workspace; "
            "run the demo in another workspace (--workspace DIR)"
        )
    cast, imported, skipped = import_cast(forge, model_ref)
    states = sweep_states()
    rows = []
    characters = [forge.get(name) for name in cast]
    for character in progress_bar(characters, desc="demo", unit="character"):
        ensure_identity(character, steps)
        results = feel_many(character, [state for _, state in states])
        cells = [(label, Image.open(io.BytesIO(r.asset.read_bytes()))) for (label, _), r in zip(states, results)]
        rows.append((character.display_name, cells))
    buf = io.BytesIO()
    contact_sheet(rows).save(buf, format="PNG")
    sheet = forge.workspace.write_atomic(SHEET_PATH, buf.getvalue())
    tunes = []
    if music:
        for character in progress_bar(characters, desc="demo music", unit="character"):
            tunes += write_music(forge, character, bgm_model=bgm_model)
    return DemoResult(sheet=sheet, imported=imported, characters=[c.name for c in characters], music=tunes,
                      skipped=skipped)
