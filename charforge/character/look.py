"""`learn_token`, `learn_lora`, `import_look`, `export_look`: a character's look as adapters of its model.

A look is taught from a few pictures of the character (or, by default, its own base CG) as a
textual-inversion token and/or a peft LoRA (`charforge.engine.adapters`), or imported from a
community file (diffusers/A1111 embeddings, diffusers/peft/kohya LoRAs; safetensors only). It is
stored in the identity, worn by the shared model whenever the character is drawn, and exported in
the files diffusers' own loaders read. A new look makes the identity stale: the base CG was drawn
and inverted without it, so `reinvert` (optionally `--rerender`) rebuilds it with the look on.

Captions (unless `captions` says more, e.g. each picture's expression, which lets the look be learnt
without a face): a token's pictures are captioned `"{token}, <neutral expression>"` for the base CG
and `"{token}"` otherwise. A LoRA's captions are the same with the character's token if it has one,
else the character's own prompt (what the character is drawn with, so that is what the LoRA learns
to draw as these pictures).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import PIL.Image

from charforge.character.identity import character_model, has_identity
from charforge.character.look_store import character_look, character_token
from charforge.emotion.conditioning import expression_table
from charforge.engine.adapters import (
    LORA_LR,
    LORA_RANK,
    LORA_STEPS,
    LORA_TEXT_ENCODER,
    LORA_TIMESTEP_BIAS,
    Look,
    check_token,
    read_embedding,
    read_lora,
    train_lora,
    train_token,
    training_set,
    wearing,
    write_embedding,
    write_lora,
)
from charforge.errors import InvalidInput, NotFound
from charforge.store.models import IdentityKind
from charforge.store.records import ArtifactInfo

if TYPE_CHECKING:
    from charforge.character.protocol import Character

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
KINDS = {"token": IdentityKind.TEXTUAL_INVERSION, "lora": IdentityKind.LORA}
ImageSource = str | os.PathLike | PIL.Image.Image


@dataclass(frozen=True)
class LearnResult:
    """What a training run stored: the artifact, and how the fit went (steps, time, best check loss)."""

    kind: str
    artifact: ArtifactInfo
    steps: int
    seconds: float
    best_loss: float
    interrupted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "steps": self.steps, "seconds": round(self.seconds, 1),
            "best_loss": round(self.best_loss, 5), "interrupted": self.interrupted, "artifact": self.artifact.to_dict(),
        }  # fmt: skip


def look_images(images: ImageSource | Sequence[ImageSource] | None, character: Character) -> list[PIL.Image.Image]:
    """Pictures from a folder, files or PIL images; None: the character's base CG."""
    if images is None:
        if not has_identity(character):
            raise NotFound(f"{character.name!r} has no base CG to learn from; render it first or pass pictures")
        pixels = character.store.get_identity(IdentityKind.BASE_IMAGE).tensors["pixels"].numpy()
        return [PIL.Image.fromarray(pixels)]
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        folder = Path(images)
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise InvalidInput(f"no pictures ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    elif isinstance(images, (str, os.PathLike, PIL.Image.Image)):
        images = [images]
    pictures = []
    for item in images:
        if isinstance(item, PIL.Image.Image):
            pictures.append(item.convert("RGB"))
            continue
        try:
            with PIL.Image.open(item) as opened:
                pictures.append(opened.convert("RGB"))
        except (OSError, PIL.UnidentifiedImageError) as exc:
            raise InvalidInput(f"cannot read picture {item}: {exc}") from None
    if not 1 <= len(pictures) <= 100:
        raise InvalidInput(f"learn a look from 1 to 100 pictures, got {len(pictures)}")
    return pictures


def _captions(character: Character, count: int, from_base: bool, captions: Sequence[str] | None) -> list[str]:
    if captions is not None:
        captions = [captions] * count if isinstance(captions, str) else list(captions)
        if len(captions) != count:
            raise InvalidInput(f"{len(captions)} captions for {count} pictures")
        return captions
    if from_base:
        neutral = expression_table(character.settings.get("expressions")).neutral_phrase
        return [f"{{token}}, {neutral}"] * count
    return ["{token}"] * count


def _fill(caption: str, token: str | None) -> str:
    if token:
        return caption.replace("{token}", token)
    return caption.replace("{token}", "").strip(" ,")


def learn_token(
    character: Character,
    images: ImageSource | Sequence[ImageSource] | None = None,
    *,
    token: str | None = None,
    vectors: int = 4,
    steps: int = 300,
    lr: float = 2e-2,
    init: str | None = None,
    captions: str | Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> LearnResult:
    """Teach the character's look as a new token (default `<name>`) from pictures (default: its base CG).

    Use the token in the character's prompt to draw with it. An interrupted run stores its best checkpoint.
    """
    token = check_token(token or f"<{character.name}>")
    pictures = look_images(images, character)
    texts = [_fill(c, token) for c in _captions(character, len(pictures), images is None, captions)]
    model = character_model(character)
    with wearing(model, None):  # learn against the bare model, not the character's current look
        data = training_set(model, pictures, texts)
        vectors_, fit = train_token(
            model, data, token, vectors=vectors, init=init, steps=steps, lr=lr, seed=seed, progress=progress
        )
    meta = {"token": token, "vectors": len(vectors_), "source": "learnt", "steps": fit.steps, "lr": lr,
            "pictures": len(pictures), "best_loss": fit.best_loss}  # fmt: skip
    info = character.store.put_identity(IdentityKind.TEXTUAL_INVERSION, {"vectors": vectors_}, metadata=meta)
    log.info("%s learnt token %s (%d vectors) in %.0f s", character.name, token, len(vectors_), fit.seconds)
    return LearnResult("token", info, fit.steps, fit.seconds, fit.best_loss, fit.interrupted)


def learn_lora(
    character: Character,
    images: ImageSource | Sequence[ImageSource] | None = None,
    *,
    rank: int = LORA_RANK,
    steps: int = LORA_STEPS,
    lr: float = LORA_LR,
    strength: float = 1.0,
    text_encoder: bool = LORA_TEXT_ENCODER,
    captions: str | Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> LearnResult:
    """Teach the character's look as a rank-`rank` LoRA of the UNet and (by default) the text encoder,
    with the character's token active if it has one."""
    Look(strength=strength)  # validates the strength before minutes of training
    pictures = look_images(images, character)
    current = character_look(character)
    tokens = dict(current.tokens) if current is not None else {}
    token = character_token(character)
    if token is None and captions is None:
        captions = character.prompt
    texts = [_fill(c, token) for c in _captions(character, len(pictures), images is None, captions)]
    model = character_model(character)
    with wearing(model, None):
        data = training_set(model, pictures, texts)
        tensors, fit = train_lora(
            model, data, rank=rank, text_encoder=text_encoder, tokens=tokens, steps=steps, lr=lr, seed=seed,
            progress=progress,
        )  # fmt: skip
    meta = {"strength": float(strength), "rank": rank, "source": "learnt", "steps": fit.steps, "lr": lr,
            "timestep_bias": LORA_TIMESTEP_BIAS,
            "text_encoder": text_encoder, "pictures": len(pictures), "best_loss": fit.best_loss}  # fmt: skip
    info = character.store.put_identity(IdentityKind.LORA, tensors, metadata=meta)
    log.info("%s learnt a rank-%d LoRA in %.0f s", character.name, rank, fit.seconds)
    return LearnResult("lora", info, fit.steps, fit.seconds, fit.best_loss, fit.interrupted)


def import_look(
    character: Character, path: str | os.PathLike, *, strength: float = 1.0, token: str | None = None
) -> ArtifactInfo:
    """Store an embedding or LoRA file (safetensors) as the character's token or LoRA.

    The kind is read from the file (one tensor: an embedding). It is checked by wearing it on the
    character's model once, so a file for another architecture is refused here, not at render time.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InvalidInput(f"refusing {path.name}: only .safetensors files are imported (pickle files can run code)")
    if not path.is_file():
        raise NotFound(f"file not found: {path}")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            count = len(list(handle.keys()))
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise InvalidInput(f"{path.name} is not a readable safetensors file ({str(exc)[:200]})") from None
    if count == 1:
        named, vectors = read_embedding(path)
        token = check_token(token or named or f"<{character.name}>")
        _check_fits(character, Look({token: vectors}))
        meta = {"token": token, "vectors": len(vectors), "source": "import", "file": path.name}
        return character.store.put_identity(IdentityKind.TEXTUAL_INVERSION, {"vectors": vectors}, metadata=meta)
    lora = read_lora(path)
    _check_fits(character, Look(lora=lora, strength=strength))
    meta = {"strength": float(strength), "source": "import", "file": path.name}
    return character.store.put_identity(IdentityKind.LORA, lora, metadata=meta)


def _check_fits(character: Character, look: Look) -> None:
    with wearing(character_model(character), look):
        pass


def export_look(character: Character, kind: str, out: str | os.PathLike) -> Path:
    """Write the character's token (`learned_embeds.safetensors` layout) or LoRA (`pytorch_lora_weights`
    layout, or the imported file's own) to `out`, which must end in .safetensors."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown look kind {kind!r} (choose from {', '.join(KINDS)})")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InvalidInput(f"the output file must end in .safetensors, got {out.name}")
    if not out.parent.is_dir():
        raise NotFound(f"output folder does not exist: {out.parent}")
    if not any(a.kind == KINDS[kind].value for a in character.store.identity()):
        raise NotFound(f"{character.name!r} has no {kind}; learn or import one first")
    art = character.store.get_identity(KINDS[kind])
    if kind == "token":
        return write_embedding(out, art.metadata["token"], art.tensors["vectors"])
    return write_lora(out, art.tensors)


def forget_look(character: Character, kind: str | None = None) -> int:
    """Drop the character's token, LoRA or both (None); returns how many were removed."""
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"unknown look kind {kind!r} (choose from {', '.join(KINDS)})")
    kinds = [KINDS[kind]] if kind else list(KINDS.values())
    return sum(character.store.delete_identity(k) for k in kinds)
