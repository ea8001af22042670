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

from tqdm.auto import tqdm

from charforge.cards import load_cards
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
from charforge.errors import StaleIdentity
from charforge.forge import Forge

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


def cast_dir() -> Path:
    """The sample cast shipped inside the package (the repository's characters/ links here)."""
    return Path(str(resources.files("charforge") / "cast"))


def cast_names() -> list[str]:
    return [card.name for _, card in load_cards(cast_dir())]


def import_cast(forge: Forge, model_ref: str | None = None) -> list[str]:
    """Create the sample cast's characters that the workspace does not have yet (drawn with
    `model_ref` if given); existing ones are switched to `model_ref`."""
    created = []
    for _, card in load_cards(cast_dir()):
        if not forge.exists(card.name):
            card = card.model_copy(update={"model": model_ref}) if model_ref is not None else card
            forge.create_from_card(card, build_identity=False)
            created.append(card.name)
        elif model_ref is not None and forge.get(card.name).model_ref != model_ref:
            forge.get(card.name).update(model=model_ref)
    return created


SWEEP_INTENSITIES = (0.5, 1.0)


def sweep_states() -> list[tuple[str, dict[str, float]]]:
    """(label, state): neutral, then every basis emotion at each sweep intensity."""
    states = [("base", {})]
    for name in BASIS:
        for value in SWEEP_INTENSITIES:
            states.append((f"{name} {value:g}", {name: value}))
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

    imported = import_cast(forge, model_ref)
    states = sweep_states()
    rows = []
    characters = [forge.get(name) for name in cast_names()]
    for character in tqdm(characters, desc="demo", unit="character"):
        ensure_identity(character, steps)
        results = feel_many(character, [state for _, state in states])
        cells = [(label, Image.open(io.BytesIO(r.asset.read_bytes()))) for (label, _), r in zip(states, results)]
        rows.append((character.display_name, cells))
    buf = io.BytesIO()
    contact_sheet(rows).save(buf, format="PNG")
    sheet = forge.workspace.write_atomic(SHEET_PATH, buf.getvalue())
    tunes = []
    if music:
        for character in tqdm(characters, desc="demo music", unit="character"):
            tunes += write_music(forge, character, bgm_model=bgm_model)
    return DemoResult(sheet=sheet, imported=imported, characters=[c.name for c in characters], music=tunes)
