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
    config = Path(ref).expanduser() / "text_encoder" / "config.json"
    try:
        vocab = json.loads(config.read_text(encoding="utf-8")).get("vocab_size", CLIP_VOCAB)
    except (OSError, ValueError):
        return "sd"
    return "mini" if int(vocab) < CLIP_VOCAB else "sd"


def character_table(character: Character) -> ExpressionTable:
    """The expression table of the character's model family, with the character's overrides."""
    return expression_table(character.settings.get("expressions"), family=model_family(character.model_ref))


def model_calibration(character: Character) -> Calibration | None:
    """The calibration of the character's model: the workspace's own measurement of these weights
    (`charforge calibrate NAME`), else the one shipped beside a charforge-mini folder.

    A calibration measured on other weights than the model's current ones is ignored (with a warning).
    """
    ref = character.model_ref
    current = weights_hash(ref) or character.model_hash
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
