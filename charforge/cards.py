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


class CardLook(BaseModel):
    """Files that give a card's character its look: an embedding and/or a LoRA (.safetensors, relative to
    the card), imported when the character is created, before its identity is drawn."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    embedding: str | None = Field(default=None, min_length=1, max_length=500)
    token: str | None = Field(default=None, max_length=42)
    lora: str | None = Field(default=None, min_length=1, max_length=500)
    strength: float = Field(default=1.0, ge=0.0, le=4.0)

    @field_validator("embedding", "lora")
    @classmethod
    def _safetensors(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".safetensors"):
            raise ValueError("must be a .safetensors file (pickle files can run code)")
        return value

    def files(self) -> list[tuple[str, Path]]:
        return [(kind, Path(name)) for kind, name in (("embedding", self.embedding), ("lora", self.lora)) if name]

    def checked(self, folder: Path) -> CardLook:
        """This look with its files resolved against `folder` and read (their content validated)."""
        from charforge.engine.adapters import check_token, read_embedding, read_lora

        resolved = {}
        for kind, name in self.files():
            path = name if name.is_absolute() else (folder / name)
            (read_embedding if kind == "embedding" else read_lora)(path)
            resolved[kind] = str(path.resolve())
        if self.token is not None:
            check_token(self.token)
        return self.model_copy(update=resolved)


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
    look: CardLook | None = None

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
        card = CharacterCard(**data)
    except ValidationError as exc:
        raise invalid_input(exc, f"card {path.name}") from None
    if card.look is not None:
        try:
            card = card.model_copy(update={"look": card.look.checked(path.parent)})
        except InvalidInput as exc:
            raise InvalidInput(f"card {path.name}: look: {exc}") from None
    return card


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
