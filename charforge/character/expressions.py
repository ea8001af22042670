"""Which expression table and calibration a character's pictures use: chosen by its model.

charforge-mini speaks its caption words (`expressions.toml`), real SD checkpoints plain English
(`expressions_sd.toml`); a model's calibration lives beside a mini folder or, for a user's model, in
the workspace under calibrations/<model hash>.json (`charforge calibrate`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from charforge.emotion.calibration import Calibration, load_calibration, workspace_relpath
from charforge.emotion.conditioning import ExpressionTable, expression_table
from charforge.files import FileMemo
from charforge.models import default_model_path, weights_hash

if TYPE_CHECKING:
    from charforge.character.protocol import Character

log = logging.getLogger(__name__)

CLIP_VOCAB = 49408  # the vocabulary of real SD text encoders; charforge-mini's knows only its caption words


def model_family(ref: str | None) -> str:
    """"mini" for charforge-mini folders (the default, or a fine-tune of it), "sd" for everything else.

    Told apart by the text encoder's vocabulary: the mini model's is a few hundred caption words.
    """
    if ref is None:
        return "mini"
    try:
        vocab = _vocab_size(Path(ref).expanduser() / "text_encoder" / "config.json")
    except (OSError, ValueError):
        return "sd"
    return "mini" if int(vocab) < CLIP_VOCAB else "sd"


def _read_vocab_size(config: Path) -> object:
    return json.loads(config.read_text(encoding="utf-8")).get("vocab_size", CLIP_VOCAB)


_vocab_size = FileMemo(_read_vocab_size)  # asked on every cached lookup: a `stat` while the file is unchanged


def character_table(character: Character, family: str | None = None) -> ExpressionTable:
    """The expression table of the character's model family (`family`: already known), with the
    character's overrides (its `settings["expressions"]`: all a table takes from the character)."""
    family = model_family(character.model_ref) if family is None else family
    return expression_table(character.settings.get("expressions"), family=family)


def model_calibration(character: Character, model_hash: str | None = None) -> Calibration | None:
    """The calibration of the character's model (`model_hash`: its weights' hash, already known): the
    workspace's own measurement of these weights (`charforge calibrate NAME`), else the one shipped
    beside a charforge-mini folder.

    A calibration measured on other weights than the model's current ones is ignored (with a warning).
    """
    ref = character.model_ref
    current = model_hash or weights_hash(ref) or character.model_hash
    found = None
    if current:
        found = load_calibration(character.store.workspace.resolve(workspace_relpath(current)))
    if found is None and model_family(ref) == "mini":
        found = load_calibration(default_model_path() if ref is None else Path(ref))
    if found is not None and current and found.model_hash != current:
        log.warning("the calibration of %s was measured on other weights; run `charforge calibrate`",
                    ref or "the default model")
        return None
    return found
