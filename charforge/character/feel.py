"""`Character.feel(state)`: redraw the character with the expression a state calls for, once per state.

An emotion edit starts from the stored inversion of the base CG and denoises two branches in one loop
call: the source (the base prompt, held on the inversion) and the target (a blend of expression
prompts from `charforge.emotion.conditioning`). Prompt-to-Prompt replace gives the target the
source's attention layout, reweight sets how strongly the expression phrase is attended, and a local
blend keeps every latent cell outside the dilated face mask equal to the source's at every step, so
hair, outfit and background are the base CG's own.

The result is stored as a `cg` asset under a canonical hash of (identity, quantised state, model
hash, conditioning and edit parameters). Asking again for a state that hashes the same returns the
stored file without loading the model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from charforge.canonical import canonical_hash
from charforge.character.handle import Asset, Character
from charforge.emotion import EmotionState
from charforge.emotion.conditioning import Conditioning, ExpressionTable, conditioning, expression_table
from charforge.engine import Hook, ModelBundle, StepContext, decode_latents, denoise, encode_prompts
from charforge.engine import inpaint as engine_inpaint
from charforge.engine.attention import AttentionControl, LocalBlend, Refine, Replace, Reweight
from charforge.engine.attention.tokens import max_columns, word_columns
from charforge.engine.inversion import FollowInversion, inversion_schedulers, source_embeddings
from charforge.errors import InvalidInput
from charforge.character.identity import (
    Identity,
    build_identity,
    character_model,
    check_fresh,
    current_model_hash,
    has_identity,
    history_entry,
    invert_base,
    load_identity,
    png_bytes,
)
from charforge.paths import sha256_bytes, validate_slug
from charforge.character.regions import mask_from_image
from charforge.store.models import AssetKind, IdentityKind

log = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when the rendering changes in a way the parameters do not show
RENDER_BATCH = 8  # edits denoised together in one loop call by `feel_many`
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MaskBlend(Hook):
    """Local blend with a fixed mask: after every step, target rows take the source row's latent
    outside `mask` (1 = may change). Row 0 is the source, held on the inversion by `FollowInversion`,
    which must run before this hook."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(latents)
        blended = latents.clone()
        blended[1:] = latents[:1] + mask * (latents[1:] - latents[:1])
        return blended


def latent_mask(mask: torch.Tensor, factor: int, dilation: int) -> torch.Tensor:
    """Pixel mask (H, W) -> latent cells (h, w) holding any masked pixel, grown by `dilation` cells."""
    cells = F.max_pool2d(mask.float()[None, None], kernel_size=factor, stride=factor)
    if dilation:
        cells = F.max_pool2d(cells, kernel_size=2 * dilation + 1, stride=1, padding=dilation)
    return cells[0, 0]


def pixel_mask(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Latent cells (h, w) -> the bool pixel mask (H, W) they cover."""
    return F.interpolate(cells.float()[None, None], size=size, mode="nearest")[0, 0].bool()


@dataclass(frozen=True)
class FeelResult:
    """A picture of a state: the stored asset, the (quantised) state and what it was conditioned on."""

    asset: Asset
    state: EmotionState
    conditioning: Conditioning
    cached: bool

    @property
    def path(self) -> Path:
        return self.asset.path

    @property
    def key(self) -> str:
        return self.asset.state_hash

    def image(self) -> PIL.Image.Image:
        import io

        return PIL.Image.open(io.BytesIO(self.asset.read_bytes()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.asset.path),
            "hash": self.asset.state_hash,
            "state": self.state.components(),
            "dominant": self.state.dominant,
            "cached": self.cached,
            "conditioning": self.conditioning.to_dict(),
        }


# keys -------------------------------------------------------------------------------------------------


def _edit_params(table: ExpressionTable) -> dict[str, Any]:
    return table.edit.model_dump()


def state_key(character: Character, cond: Conditioning, model_hash: str, table: ExpressionTable) -> str:
    """The cache key of a state's picture: same identity, state, model and parameters -> same key."""
    return canonical_hash(
        {
            "what": "feel",
            "version": KEY_VERSION,
            "identity": character.identity_hash(),
            "state": cond.state.intensities(),
            "model": model_hash,
            "conditioning": cond.to_dict(),
            "edit": _edit_params(table),
        }
    )


def _as_state(state: EmotionState | Mapping[str, float] | None, intensities: Mapping[str, float]) -> EmotionState:
    if state is not None and intensities:
        raise InvalidInput("give a state or emotion keywords, not both")
    if state is None:
        return EmotionState.from_mapping(intensities)
    return state if isinstance(state, EmotionState) else EmotionState.from_mapping(state)


# feel ---------------------------------------------------------------------------------------------------


def explain(character: Character, state: EmotionState | Mapping[str, float]) -> Conditioning:
    """What `state` becomes for this character (after quantisation and its expression overrides)."""
    table = expression_table(character.settings.get("expressions"))
    return conditioning(_as_state(state, {}), character.prompt, table)


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
    wanted = _as_state(state, intensities)
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
    table = expression_table(character.settings.get("expressions"))
    conds = [conditioning(_as_state(s, {}), character.prompt, table) for s in states]
    if not has_identity(character):
        log.info("%s has no identity yet; building it first", character.name)
        build_identity(character)
    model_hash = current_model_hash(character)
    keys = [state_key(character, c, model_hash, table) for c in conds]
    found: dict[str, Asset] = {}
    for key in dict.fromkeys(keys):
        asset = character.find_asset(AssetKind.CG, key)
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
    identity_hash = character.identity_hash()
    if neutral:  # the base CG itself: no model needed
        pixels = character.get_identity(IdentityKind.BASE_IMAGE).tensors["pixels"].numpy()
        for key, cond in neutral.items():
            out[key] = _store(character, pixels, key, cond, table, identity_hash, "base")
    if edits:
        model = character_model(character)
        identity = load_identity(character, model)
        items = list(edits.items())
        chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
        for chunk in tqdm(chunks, desc=f"feel {character.name}", disable=not progress or len(chunks) < 2):
            images = render_edits(model, identity, [c for _, c in chunk], table)
            for (key, cond), pixels in zip(chunk, images):
                out[key] = _store(character, pixels, key, cond, table, identity_hash, "edit")
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
        "edit": _edit_params(table),
        "identity": identity_hash,
        "model_hash": character.model_hash,
    }
    return character.add_asset(png_bytes(pixels), AssetKind.CG, key, params, suffix=".png")


def _blend_embeddings(model: ModelBundle, source: str, conds: Sequence[Conditioning]) -> torch.Tensor:
    """Rows: the source prompt, then each state's weighted sum of its prompts' embeddings."""
    prompts = list(dict.fromkeys([source, *(p for c in conds for p, _ in c.blend())]))
    encoded = dict(zip(prompts, encode_prompts(model, prompts)))
    rows = [encoded[source]]
    for cond in conds:
        rows.append(sum(weight * encoded[prompt] for prompt, weight in cond.blend()))
    return torch.stack(rows)


def render_edits(
    model: ModelBundle, identity: Identity, conds: Sequence[Conditioning], table: ExpressionTable
) -> list[np.ndarray]:
    """Emotion edits of one identity, all in one loop call: uint8 (H, W, 3) pictures, one per conditioning."""
    latents = edit_latents(model, identity, conds, table)
    pictures = decode_pictures(model, latents[1:])
    cells = edit_mask(model, identity, table)
    if table.edit.composite and cells is not None:
        pictures = composite(pictures, identity.base, cells)
    return pictures


def decode_pictures(model: ModelBundle, latents: torch.Tensor) -> list[np.ndarray]:
    """Latents -> uint8 (H, W, 3) pictures."""
    with torch.no_grad():
        pixels = (decode_latents(model, latents) / 2 + 0.5).clamp(0, 1)
    return [(p.permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy() for p in pixels]


def composite(pictures: Sequence[np.ndarray], base: np.ndarray, cells: torch.Tensor) -> list[np.ndarray]:
    """Each picture inside the latent-cell mask, the base outside it.

    Outside the mask an edit's latents are the base's, but decoding is not exact (the VAE's loss on a
    picture it did not draw, its receptive field across the border), so the base's own pixels go there.
    """
    inside = pixel_mask(cells, base.shape[:2]).numpy()[..., None]
    return [np.where(inside, p, base) for p in pictures]


def edit_mask(model: ModelBundle, identity: Identity, table: ExpressionTable) -> torch.Tensor | None:
    """The latent cells (h, w) an expression edit may change: the dilated region mask, if there is one."""
    region = table.edit.region
    if region not in identity.masks:
        return None
    return latent_mask(identity.masks[region], model.vae_scale_factor, table.edit.mask_dilation)


def edit_latents(
    model: ModelBundle, identity: Identity, conds: Sequence[Conditioning], table: ExpressionTable
) -> torch.Tensor:
    """Final latents of an edit call: row 0 the source (the base CG's latent), then one row per conditioning."""
    inversion = identity.inversion
    tokenizer = model.tokenizer
    source = inversion.prompt
    targets = [c.target_prompt for c in conds]
    scheduler, _ = inversion_schedulers(model, inversion.steps)
    cond = _blend_embeddings(model, source, conds)
    _, uncond = source_embeddings(model, inversion)

    schedule = dict(cross_replace_steps=table.edit.cross_replace, self_replace_steps=table.edit.self_replace)
    word_swap = all(len(t.split()) == len(source.split()) for t in targets)
    controllers = [(Replace if word_swap else Refine)(tokenizer, source, targets, **schedule)]
    weights = {}
    for branch, c in enumerate(conds, start=1):
        row = torch.ones(max_columns(tokenizer))
        row[word_columns(tokenizer, c.target_prompt, c.dominant.phrase)] = c.attention_weight
        weights[branch] = row
    controllers.append(Reweight(weights))

    hooks: list[Hook] = []
    cells = edit_mask(model, identity, table)
    if cells is not None:
        hooks.append(MaskBlend(cells))
    else:  # no mask of the region: confine the edit to where the expression words attend
        log.warning("no %r mask; limiting the edit to where the expression words attend", table.edit.region)
        words = list(dict.fromkeys(c.dominant.phrase for c in conds))
        controllers.append(LocalBlend(tokenizer, [source, *targets], words, dilation=table.edit.mask_dilation))

    control = AttentionControl(controllers)
    follow = FollowInversion(inversion, needs_source=control.needs_source, shortcut=True)
    start = inversion.x_T.to(model.device, model.dtype).expand(len(conds) + 1, -1, -1, -1).clone()
    return denoise(model, scheduler, start, cond.to(model.dtype), uncond, inversion.guidance, [follow, control, *hooks])


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
    if _CONTROL.search(prompt) or len(prompt) > 2000:
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
        log.warning("the base prompt names no region ending in %r; drawing with the prompt as given", prompt.split()[-1])
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
        {"what": "inpaint", "version": KEY_VERSION, "identity": character.identity_hash(), "mask": mask_hash, **params}
    )
    asset = character.find_asset(AssetKind.CG, key)
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
        drawn = (gen.pixels[0].permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
        pixels = np.where(mask.numpy()[..., None], drawn, identity.base)  # outside the region: the base CG's pixels
        asset = character.add_asset(png_bytes(pixels), AssetKind.CG, key, params, suffix=".png")
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
