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
from charforge.errors import CharforgeError, InvalidInput
from charforge.models import check_model_ref
from charforge.paths import validate_slug
from charforge.settings import MAX_DEPTH, depth, validate_settings
from charforge.validation import CONTROL_CHARS, invalid_input

CARD_SUFFIXES = (".toml", ".yaml", ".yml")
MAX_CARD_BYTES = 64 * 1024
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
        try:
            return validate_settings(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

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


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (a few hundred bytes of nested aliases expand to gigabytes:
    "billion laughs") and with a nesting limit (the composer recurses: deep nesting would overflow)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a card", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH + 2:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _parse(text: str, suffix: str) -> Any:
    if suffix == ".toml":
        return tomllib.loads(text)
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def load_card(path: Path) -> CharacterCard:
    """One card from a .toml, .yaml or .yml file: size-, depth- and alias-limited, UTF-8, validated
    down to its settings tables and the readability of its model before anything is written."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read card {path}: {exc.strerror}") from None
    if len(raw) > MAX_CARD_BYTES:
        raise InvalidInput(f"card {path.name} is larger than {MAX_CARD_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"card {path.name} is not UTF-8 text (byte {exc.start})") from None
    kind = path.suffix[1:].upper()
    try:
        data = _parse(text, path.suffix)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"card {path.name} is not valid {kind}: {first_line}") from None
    except RecursionError:
        raise InvalidInput(f"card {path.name} is nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"card {path.name} must be a table of fields, not {type(data).__name__}")
    if depth(data) > MAX_DEPTH:
        raise InvalidInput(f"card {path.name} is nested more than {MAX_DEPTH} levels deep")
    try:
        card = CharacterCard(**data)
    except ValidationError as exc:
        raise invalid_input(exc, f"card {path.name}") from None
    except TypeError:  # keys that are not strings (YAML allows `1: x`)
        raise InvalidInput(f"card {path.name}: field names must be text") from None
    try:
        check_model_ref(card.model)
    except CharforgeError as exc:
        raise InvalidInput(f"card {path.name}: {exc}") from None
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
