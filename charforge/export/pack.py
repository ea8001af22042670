"""What every sprite format is written from: a character's pictures (and music) per expression label.

A `Pack` is gathered through the character's own verbs (`feel_many`, `bgm`), so states already
rendered come from the cache without the model and missing ones are drawn in batches; the format
writers only copy stored, checksum-verified bytes into the layout their engine loads.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charforge.character import Character
from charforge.emotion import EmotionState
from charforge.emotion.labels import check_labels, label_state
from charforge.errors import InvalidInput
from charforge.store.records import Asset

DEFAULT_MUSIC_SECONDS = 16.0
_SAFE_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")


@dataclass(frozen=True)
class Sprite:
    """One expression: its label, the state it shows and the stored picture."""

    label: str
    state: EmotionState
    picture: Asset


@dataclass(frozen=True)
class Track:
    """The loopable music of one expression label (several labels may share one file)."""

    label: str
    audio: Asset
    plan: dict[str, Any]


@dataclass(frozen=True)
class Pack:
    name: str  # the character's slug: safe in paths and engine identifiers
    display_name: str
    model_hash: str | None
    sprites: tuple[Sprite, ...]
    tracks: tuple[Track, ...] = ()

    @property
    def folder_name(self) -> str:
        """The display name where it is a plain file name (front ends show the folder), else the slug."""
        shown = self.display_name.strip()
        return shown if _SAFE_FOLDER.fullmatch(shown) and not shown.endswith(".") else self.name


def collect(
    character: Character,
    labels: Sequence[str],
    *,
    intensity: float = 1.0,
    music: bool = False,
    music_options: Mapping[str, Any] | None = None,
    batch: int | None = None,
) -> Pack:
    """The character's pictures for `labels` at `intensity` (rendered where missing), and with `music`
    a loopable BGM per label (`music_options` go to `Character.bgm`: seconds, steps, seed...)."""
    from charforge.character.feel import RENDER_BATCH, feel_many

    labels = check_labels(labels)
    states = [label_state(label, intensity) for label in labels]
    results = feel_many(character, states, batch=batch or RENDER_BATCH)
    sprites = tuple(Sprite(label, result.state, result.asset) for label, result in zip(labels, results))
    tracks: tuple[Track, ...] = ()
    if music:
        options = {"seconds": DEFAULT_MUSIC_SECONDS, **(music_options or {}), "loop": True}
        made = [character.bgm(state, **options) for state in states]
        tracks = tuple(Track(label, r.asset, r.plan.to_dict()) for label, r in zip(labels, made) if r.asset)
    return Pack(character.name, character.display_name, character.model_hash, sprites, tracks)


# writing ------------------------------------------------------------------------------------------------


def prepare_out(out: str | os.PathLike[str]) -> Path:
    """The output folder, created if missing; its parent must exist (a typo should not build a tree)."""
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"--out {out} exists and is not a folder")
    if not path.parent.is_dir():
        raise InvalidInput(f"the folder holding --out {out} does not exist")
    path.mkdir(exist_ok=True)
    return path


def write_file(path: Path, data: bytes) -> Path:
    """Write via a temp file and a rename, so an interrupted export never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_file(path, text.encode("utf-8"))


@dataclass(frozen=True)
class Format:
    """A sprite format: how a pack is laid out for one consumer. Registered in `charforge.export.registry`."""

    name: str
    description: str
    default_set: str  # the label set used when the caller names none
    music: bool  # whether the format carries BGM (rendered unless the caller opts out)
    write: Callable[[Pack, Path], list[Path]]  # (pack, output folder) -> files written
