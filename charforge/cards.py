"""Character cards: the validated description of a character, from `Forge.create` arguments or a TOML/YAML file.

One pydantic model checks both, so a card that imports is exactly a character `create` would accept.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from charforge.canonical import canonical_json
from charforge.errors import InvalidInput
from charforge.paths import validate_slug
from charforge.validation import CONTROL_CHARS, invalid_input

CARD_SUFFIXES = (".toml", ".yaml", ".yml")
SEED_MAX = 2**32 - 1  # what numpy and every diffusers pipeline accept

Text = Annotated[str, Field(max_length=2000)]


def default_seed(name: str) -> int:
    """A seed derived from the name, so a character created twice without a seed looks the same twice."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def default_display_name(name: str) -> str:
    return re.sub(r"[-_]+", " ", name).title()


class CharacterCard(BaseModel):
    """Everything needed to create a character; the identity (inversion, masks) is derived later."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str
    display_name: str | None = Field(default=None, max_length=200)
    prompt: Text = Field(min_length=1)
    negative_prompt: Text = ""
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX, strict=True)
    model: str | None = Field(default=None, min_length=1, max_length=500)
    # Per-character overrides of the shipped data tables (emotion conditioning, music).
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", mode="before")
    @classmethod
    def _slug(cls, value: object) -> str:
        return validate_slug(value)

    @field_validator("display_name", "prompt", "negative_prompt", "model")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and CONTROL_CHARS.search(value):
            raise ValueError("must be a single line without control characters")
        return value

    @field_validator("settings")
    @classmethod
    def _json_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            canonical_json(value)
        except InvalidInput as exc:
            raise ValueError(f"settings must be plain JSON data ({exc})") from None
        return value

    @classmethod
    def build(cls, **fields: Any) -> CharacterCard:
        """Validate, raising InvalidInput (one line, naming the field) instead of pydantic's error."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise invalid_input(exc) from None

    def resolved_seed(self) -> int:
        return self.seed if self.seed is not None else default_seed(self.name)

    def resolved_display_name(self) -> str:
        return self.display_name or default_display_name(self.name)


def load_card(path: Path) -> CharacterCard:
    """One card from a .toml, .yaml or .yml file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read card {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"card {path.name} is not valid {path.suffix[1:].upper()}: {first_line}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"card {path.name} must be a table of fields, not {type(data).__name__}")
    try:
        return CharacterCard(**data)
    except ValidationError as exc:
        raise invalid_input(exc, f"card {path.name}") from None


def load_cards(folder: str | Path) -> list[tuple[Path, CharacterCard]]:
    """Every card in `folder` (not recursive), all validated before any is used; names must be unique."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder of character cards")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in CARD_SUFFIXES)
    if not files:
        raise InvalidInput(f"no character cards (*.toml, *.yaml) in {root}")
    cards = [(path, load_card(path)) for path in files]
    seen: dict[str, Path] = {}
    for path, card in cards:
        if card.name in seen:
            raise InvalidInput(f"cards {seen[card.name].name} and {path.name} both define {card.name!r}")
        seen[card.name] = path
    return cards
