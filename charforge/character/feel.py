"""`Character.feel(state)`: redraw the character with the expression a state calls for, once per state.

An emotion edit starts from the stored inversion of the base CG and denoises, in one loop call, the
source (the base prompt, held on the inversion) and the state's branches from
`charforge.emotion.conditioning`: one composed target prompt, or, with a model calibrated over edit
strengths, one prompt per emotion whose changes are added up at each emotion's calibrated strength
(`charforge.engine.edit_strength`), so intensity is continuous and a mixture shows each feeling at
its own weight. Prompt-to-Prompt replace gives the targets the source's attention layout, reweight
sets how strongly the expression phrase is attended, and a local blend keeps every latent cell
outside the dilated face mask equal to the source's at every step, so hair, outfit and background
are the base CG's own.

The result is stored as a `cg` asset under a canonical hash of (identity, quantised state, model
hash, conditioning and edit parameters). Asking again for a state that hashes the same returns the
stored file without loading the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import torch

from charforge.canonical import canonical_hash
from charforge.character.cache import KEY_VERSION, FeelResult, edit_params, state_conditioning, state_key
from charforge.character.edits import (
    composite,
    decode_pictures,
    edit_latents,
    edit_mask,
    latent_mask,
    pixel_mask,
)
from charforge.character.expressions import character_table
from charforge.character.identity import (
    Identity,
    build_identity,
    character_model,
    check_fresh,
    current_model_hash,
    has_identity,
    history_entry,
    identity_hash,
    invert_base,
    load_identity,
    png_bytes,
)
from charforge.character.regions import mask_from_image
from charforge.emotion import EmotionState
from charforge.emotion.conditioning import (
    Conditioning,
    ExpressionTable,
)
from charforge.engine import ModelBundle, to_uint8
from charforge.engine import inpaint as engine_inpaint
from charforge.errors import InvalidInput
from charforge.paths import sha256_bytes, validate_slug
from charforge.progress import progress as progress_bar
from charforge.store.models import AssetKind, IdentityKind
from charforge.store.records import Asset
from charforge.validation import CONTROL_CHARS

if TYPE_CHECKING:
    from charforge.character.protocol import Character

log = logging.getLogger(__name__)

RENDER_BATCH = 8  # edits denoised together in one loop call by `feel_many`


def feel_key(character: Character, state: EmotionState | Mapping[str, float]) -> str:
    """The key `feel` stores `state`'s picture under now (the character must have an identity); batch
    planning uses it to skip states already rendered without drawing them."""
    table, cond = state_conditioning(character, state)
    return state_key(character, cond, current_model_hash(character), table)


# feel ---------------------------------------------------------------------------------------------------


def feel(
    character: Character,
    state: EmotionState | Mapping[str, float] | None = None,
    *,
    record: bool = True,
    progress: bool = False,
    **intensities: float,
) -> FeelResult:
    """The character's picture for `state` (or emotion keywords: `feel(mira, joy=0.8)`).

    With `record`, the state also becomes the character's current one (appended to its history).
    A character without an identity gets one first (render and invert the base CG).
    """
    wanted = EmotionState.coerce(state, intensities)
    [result] = feel_many(character, [wanted], progress=progress)
    if record:
        character.record_emotion(wanted)
    return result


def feel_many(
    character: Character,
    states: Iterable[EmotionState | Mapping[str, float]],
    *,
    batch: int = RENDER_BATCH,
    progress: bool = False,
) -> list[FeelResult]:
    """Pictures of several states; the ones not cached yet are rendered `batch` at a time in one loop call."""
    if batch < 1:
        raise InvalidInput(f"batch must be at least 1, got {batch}")
    table = character_table(character)
    conds = [state_conditioning(character, s)[1] for s in states]
    if not has_identity(character):
        log.info("%s has no identity yet; building it first", character.name)
        build_identity(character, {"progress": progress})
    model_hash = current_model_hash(character)
    keys = [state_key(character, c, model_hash, table) for c in conds]
    found: dict[str, Asset] = {}
    for key in dict.fromkeys(keys):
        asset = character.store.find_asset(AssetKind.CG, key)
        if asset is not None:
            found[key] = asset
    todo = {key: cond for key, cond in zip(keys, conds) if key not in found}
    if todo:
        check_fresh(character, model_hash)
        fresh = _render(character, todo, table, batch=batch, progress=progress)
        found.update(fresh)
    return [FeelResult(found[key], cond.state, cond, cached=key not in todo) for key, cond in zip(keys, conds)]


def _render(
    character: Character, todo: Mapping[str, Conditioning], table: ExpressionTable, *, batch: int, progress: bool
) -> dict[str, Asset]:
    neutral = {k: c for k, c in todo.items() if c.is_neutral}
    edits = {k: c for k, c in todo.items() if not c.is_neutral}
    out: dict[str, Asset] = {}
    id_hash = identity_hash(character)
    if neutral:  # the base CG itself: no model needed
        pixels = character.store.get_identity(IdentityKind.BASE_IMAGE).tensors["pixels"].numpy()
        for key, cond in neutral.items():
            out[key] = _store(character, pixels, key, cond, table, id_hash, "base")
    if edits:
        model = character_model(character)
        identity = load_identity(character, model)
        items = list(edits.items())
        chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
        for chunk in progress_bar(chunks, enabled=progress and len(chunks) > 1, desc=f"feel {character.name}"):
            steps = progress and len(chunks) == 1  # one edit call: show its denoising steps instead
            images = render_edits(model, identity, [c for _, c in chunk], table, progress=steps)
            for (key, cond), pixels in zip(chunk, images):
                out[key] = _store(character, pixels, key, cond, table, id_hash, "edit")
    return out


def _store(
    character: Character,
    pixels: np.ndarray,
    key: str,
    cond: Conditioning,
    table: ExpressionTable,
    identity_hash: str,
    mode: str,
) -> Asset:
    params = {
        "mode": mode,
        "state": cond.state.components(),
        "conditioning": cond.to_dict(),
        "edit": edit_params(table),
        "identity": identity_hash,
        "model_hash": character.model_hash,
    }
    return character.store.add_asset(png_bytes(pixels), AssetKind.CG, key, params, suffix=".png")


def render_edits(
    model: ModelBundle, identity: Identity, conds: Sequence[Conditioning], table: ExpressionTable,
    progress: bool = False,
) -> list[np.ndarray]:
    """Emotion edits of one identity, all in one loop call: uint8 (H, W, 3) pictures, one per conditioning."""
    latents = edit_latents(model, identity, conds, table, progress)
    pictures = decode_pictures(model, latents[1:])
    cells = edit_mask(model, identity, table)
    if table.edit.composite and cells is not None:
        pictures = composite(pictures, identity.base, cells)
    return pictures


# inpainting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InpaintResult:
    asset: Asset
    prompt: str  # the full prompt the region was drawn with
    adopted: bool
    cached: bool

    @property
    def path(self) -> Path:
        return self.asset.path

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.asset.path),
            "hash": self.asset.state_hash,
            "prompt": self.prompt,
            "adopted": self.adopted,
            "cached": self.cached,
        }


def region_prompt(base_prompt: str, prompt: str) -> str | None:
    """The base prompt with its description of a region replaced by `prompt`, or None if it has none.

    "red outfit" replaces the last two words ending in "outfit" ("blue outfit"), "short blue hair" the
    last three ending in "hair": the inpaint prompt names the region by its last word.
    """
    words = prompt.split()
    if "," in prompt or not words:
        return None
    chunks = base_prompt.split(",")
    for index in range(len(chunks) - 1, -1, -1):
        chunk_words = chunks[index].split()
        if chunk_words and chunk_words[-1].lower() == words[-1].lower():
            keep = chunk_words[: max(0, len(chunk_words) - len(words))]
            lead = " " if index > 0 else ""
            chunks[index] = lead + " ".join([*keep, *words])
            return ",".join(chunks)
    return None


def _check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("inpaint needs a non-empty prompt describing the new region, e.g. 'red outfit'")
    if CONTROL_CHARS.search(prompt) or len(prompt) > 2000:
        raise InvalidInput("the inpaint prompt must be one line of at most 2000 characters")
    return " ".join(prompt.split())


def inpaint(
    character: Character,
    region: str | PIL.Image.Image | np.ndarray | torch.Tensor,
    prompt: str,
    *,
    adopt: bool = False,
    seed: int | None = None,
    strength: float = 1.0,
    steps: int | None = None,
    guidance: float | None = None,
) -> InpaintResult:
    """Redraw one region of the base CG (a mask name such as "outfit", or a mask picture) from `prompt`.

    Only the region changes: latents outside it are the base CG's at every step (the engine's
    blended-latent inpainting) and the final pixels outside it are the base CG's. With `adopt`, the
    result becomes the character's base: its prompt takes the new description, the picture is
    inverted again and the change is appended to the identity's history.
    """
    prompt = _check_prompt(prompt)
    if not 0.0 < strength <= 1.0:
        raise InvalidInput(f"strength must be in (0, 1], got {strength}")
    if not has_identity(character):
        build_identity(character)
    identity = load_identity(character)
    size = identity.base.shape[:2]
    if isinstance(region, str):
        mask = identity.mask(validate_slug(region))
        region_name = region
    else:
        mask = mask_from_image(region, size)
        region_name = "custom"
    full_prompt = region_prompt(character.prompt, prompt)
    if full_prompt is None:
        log.warning(
            "the base prompt names no region ending in %r; drawing with the prompt as given", prompt.split()[-1]
        )
    draw_prompt = full_prompt or prompt
    steps = steps or identity.inversion.steps
    guidance = guidance if guidance is not None else identity.inversion.guidance
    seed = character.seed if seed is None else seed
    model_hash = current_model_hash(character)
    params = {
        "mode": "inpaint", "region": region_name, "prompt": draw_prompt, "seed": seed, "steps": steps,
        "guidance": guidance, "strength": strength, "model_hash": model_hash,
    }  # fmt: skip
    mask_hash = sha256_bytes(mask.to(torch.uint8).numpy().tobytes())
    key = canonical_hash(
        {"what": "inpaint", "version": KEY_VERSION, "identity": identity_hash(character), "mask": mask_hash, **params}
    )
    asset = character.store.find_asset(AssetKind.CG, key)
    cached = asset is not None
    if asset is None:
        model = character_model(character)
        cells = latent_mask(mask, model.vae_scale_factor, 0)
        repaint = pixel_mask(cells, size)  # whole latent cells, so no sliver of the old region survives
        mask_image = PIL.Image.fromarray(repaint.numpy().astype(np.uint8) * 255)
        gen = engine_inpaint(
            model, identity.base_image(), mask_image, draw_prompt, negative=character.negative_prompt,
            seed=seed, steps=steps, guidance=guidance, strength=strength,
        )  # fmt: skip
        drawn = to_uint8(gen.pixels)[0]
        pixels = np.where(mask.numpy()[..., None], drawn, identity.base)  # outside the region: the base CG's pixels
        asset = character.store.add_asset(png_bytes(pixels), AssetKind.CG, key, params, suffix=".png")
    if adopt:
        _adopt(character, identity, asset, region_name, prompt, full_prompt)
    return InpaintResult(asset, draw_prompt, adopt, cached)


def _adopt(
    character: Character, identity: Identity, asset: Asset, region: str, prompt: str, full_prompt: str | None
) -> None:
    pixels = np.asarray(PIL.Image.open(asset.path).convert("RGB"), dtype=np.uint8)
    entry = history_entry(
        "inpaint", region=region, prompt=prompt, asset=asset.relpath.as_posix(),
        previous_prompt=character.prompt,
    )  # fmt: skip
    if full_prompt is not None and full_prompt != character.prompt:
        character.update(prompt=full_prompt)
    invert_base(character, pixels, {"steps": identity.inversion.steps, "guidance": identity.inversion.guidance},
                [*identity.history, entry])
    log.info("%s adopted the inpainted %s as its base", character.name, region)
