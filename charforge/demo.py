"""The main job a new user runs first: bring in the sample cast and show it as a contact sheet.

It exercises the whole stack (store, shipped model, engine) on a fresh machine with no network, so it
doubles as the smoke test a person can look at.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from charforge.canonical import canonical_hash
from charforge.cards import load_cards
from charforge.character import Character
from charforge.contact_sheet import contact_sheet
from charforge.engine import ModelBundle, default_model_path, load_model, txt2img
from charforge.forge import Forge

log = logging.getLogger(__name__)

SHEET_PATH = "demo/contact-sheet.png"


@dataclass
class DemoResult:
    sheet: Path
    imported: list[str]
    characters: list[str]


def cast_dir() -> Path:
    """The sample cast shipped inside the package (the repository's characters/ links here)."""
    return Path(str(resources.files("charforge") / "cast"))


def import_cast(forge: Forge) -> list[str]:
    """Create the sample cast's characters that the workspace does not have yet."""
    created = []
    for _, card in load_cards(cast_dir()):
        if not forge.exists(card.name):
            forge.create_from_card(card, build_identity=False)
            created.append(card.name)
    return created


def base_cg(character: Character, model: ModelBundle, *, steps: int, guidance: float) -> bytes:
    """The character's base portrait as PNG bytes, cached as a `cg` asset of its neutral state."""
    params = {"steps": steps, "guidance": guidance, "scheduler": "ddim", "mode": "base"}
    key = canonical_hash(
        {"prompt": character.prompt, "negative": character.negative_prompt, "seed": character.seed,
         "model": model.model_hash, "state": {}, "params": params}
    )
    cached = character.find_asset("cg", key)
    if cached is not None:
        return cached.read_bytes()
    gen = txt2img(model, character.prompt, negative=character.negative_prompt, seed=character.seed,
                  steps=steps, guidance=guidance)
    buf = io.BytesIO()
    gen.images[0].save(buf, format="PNG")
    character.add_asset(buf.getvalue(), "cg", key, params | {"model_hash": model.model_hash}, suffix=".png")
    return buf.getvalue()


def run_demo(forge: Forge, *, model_ref: str | None = None, steps: int = 25, guidance: float = 5.0) -> DemoResult:
    from PIL import Image

    imported = import_cast(forge)
    model = load_model(model_ref or str(default_model_path()))
    rows = []
    characters = forge.list()
    for character in characters:
        log.info("rendering %s", character.name)
        png = base_cg(character, model, steps=steps, guidance=guidance)
        rows.append((character.display_name, [("base", Image.open(io.BytesIO(png)))]))
    buf = io.BytesIO()
    contact_sheet(rows).save(buf, format="PNG")
    sheet = forge.workspace.write_atomic(SHEET_PATH, buf.getvalue())
    return DemoResult(sheet=sheet, imported=imported, characters=[c.name for c in characters])
