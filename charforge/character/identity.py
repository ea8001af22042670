"""A character's identity: rendered once, inverted once, stored in SQLite, checked against the model in use.

Everything an edit needs to redraw the same character lives in identity artifacts: the base picture,
the inversion (trajectory and per-step offsets or null-text embeddings), and region masks. Masks are
found from the prompt's words (face <- eyes, skin, the expression phrase; hair; outfit; background;
see `charforge.character.regions`) unless the user supplies them. The inversion records the model's
content hash, so a changed model is caught (`StaleIdentity`) instead of producing a different person,
and `reinvert` rebuilds the identity from the stored base picture with the new model.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from charforge.character.cache import identity_hash, look_key_of  # noqa: F401 (beside the cache keys, free of torch)
from charforge.character.expressions import character_table
from charforge.character.look_store import character_look
from charforge.character.regions import (
    REGION_WORDS,
    attention_heats,
    influence_heats,
    mask_from_image,
    partition,
    region_alternatives,
    region_spans,
)
from charforge.engine import ModelBundle, cached_model, prepare_image, to_uint8, txt2img
from charforge.engine.adapters import wear
from charforge.engine.attention import AttentionControl, AttentionStore
from charforge.engine.edit import replay
from charforge.engine.inversion import DEFAULT_METHOD, METHODS, InversionResult, encode_mean, invert_latent
from charforge.engine.loading import weights_hash
from charforge.errors import IntegrityError, InvalidInput, NotFound, StaleIdentity
from charforge.faults import pause_point
from charforge.paths import validate_slug
from charforge.store.models import IdentityKind
from charforge.validation import invalid_input

if TYPE_CHECKING:
    from charforge.character.protocol import Character

log = logging.getLogger(__name__)

MASK_METHODS = ("influence", "attention")


class IdentityOptions(BaseModel):
    """How the base CG is drawn and inverted. Edits run on the same step grid, so `steps` sets their cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(default=20, ge=1, le=200)
    guidance: float = Field(default=5.0, ge=1.0, le=30.0)
    method: str = DEFAULT_METHOD
    # How region masks are found from the prompt's words (see charforge.character.regions): "influence" or
    # "attention"; and how far above its mean (in standard deviations) a cell's heat must be.
    mask_method: str = "influence"
    mask_floor: float = Field(default=0.0, ge=-3.0, le=3.0)

    @field_validator("method", "mask_method")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        kind, choices = ("inversion method", METHODS) if info.field_name == "method" else ("mask method", MASK_METHODS)
        if value not in choices:
            raise ValueError(f"unknown {kind} {value!r} (choose from {', '.join(choices)})")
        return value


def identity_options(character: Character, options: Mapping[str, Any] | None = None) -> IdentityOptions:
    """Defaults < the character's `settings.identity` < `options` (e.g. `Forge.create(build_options=...)`)."""
    stored = character.settings.get("identity") or {}
    if not isinstance(stored, Mapping):
        raise InvalidInput(f"settings.identity of {character.name!r} must be a table")
    merged = {**stored, **{k: v for k, v in dict(options or {}).items() if v is not None}}
    try:
        return IdentityOptions(**merged)
    except ValidationError as exc:
        raise invalid_input(exc, "identity options") from None


def region_words(character: Character) -> dict[str, tuple[str, ...]]:
    """Region -> words, with the neutral expression phrase counted as face."""
    override = character.settings.get("regions")
    regions = dict(REGION_WORDS)
    if override is not None:
        if not isinstance(override, Mapping):
            raise InvalidInput(f"settings.regions of {character.name!r} must map region names to word lists")
        for name, words in override.items():
            validate_slug(name)
            if isinstance(words, str) or not all(isinstance(w, str) and w.strip() for w in words):
                raise InvalidInput(f"settings.regions.{name} must be a list of words")
            regions[name] = tuple(words)
    table = character_table(character)
    regions["face"] = (*regions.get("face", ()), table.neutral_phrase)
    return regions


# models ---------------------------------------------------------------------------------------------


def character_model(character: Character) -> ModelBundle:
    """The character's model wearing the character's look (learnt token, LoRA), loaded once per process
    (reloaded when its weights change on disk). Characters share the model: each call puts this
    character's look on and takes the previous one off (nothing is reloaded for the same character)."""
    model = cached_model(character.model_ref)
    wear(model, character_look(character))
    return model


def current_model_hash(character: Character) -> str:
    """The hash of the model the character is drawn with now, without loading local models."""
    return weights_hash(character.model_ref) or character_model(character).model_hash


# the stored identity ---------------------------------------------------------------------------------


@dataclass
class Identity:
    """A character's identity read back from the store."""

    inversion: InversionResult
    base: np.ndarray  # uint8 (H, W, 3): the picture the inversion reproduces
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> bool (H, W)
    mask_sources: dict[str, str] = field(default_factory=dict)  # name -> "user" or the mask method
    history: list[dict[str, Any]] = field(default_factory=list)

    def mask(self, name: str) -> torch.Tensor:
        if name not in self.masks:
            known = ", ".join(sorted(self.masks)) or "none"
            raise NotFound(
                f"no {name!r} mask (masks: {known}); supply one with `charforge mask NAME {name} --from FILE`"
            )
        return self.masks[name]

    def base_image(self) -> PIL.Image.Image:
        return PIL.Image.fromarray(self.base)


def has_identity(character: Character) -> bool:
    return any(a.kind == IdentityKind.INVERTED_LATENTS.value for a in character.store.identity())


def _missing(character: Character) -> NotFound:
    return NotFound(
        f"{character.name!r} has no identity yet (created with --no-render?); "
        f"run `charforge reinvert {character.name}` to render and invert its base CG"
    )


def check_fresh(character: Character, model_hash: str) -> None:
    """StaleIdentity if the stored inversion was made with another model than `model_hash`."""
    infos = {a.kind: a for a in character.store.identity() if a.name == "main"}
    info = infos.get(IdentityKind.INVERTED_LATENTS.value)
    if info is None:
        raise _missing(character)
    made_with = info.metadata.get("model_hash", "")
    if made_with != model_hash:
        model = character.model_ref or "the default model"
        raise StaleIdentity(
            f"the identity of {character.name!r} was made with model {made_with[:10]} but {model} is now "
            f"{model_hash[:10]}; run `charforge reinvert {character.name}` to rebuild it with this model"
        )
    if info.metadata.get("look", "") != look_key_of(list(infos.values())):
        raise StaleIdentity(
            f"the look of {character.name!r} (token, LoRA) changed since its identity was built; run "
            f"`charforge reinvert {character.name} --rerender` to redraw its base CG with the look "
            f"(or without --rerender to invert the stored picture again)"
        )


def load_identity(character: Character, model: ModelBundle | None = None) -> Identity:
    """The stored identity; with `model`, first checked to have been made with it (StaleIdentity otherwise)."""
    if model is not None:
        check_fresh(character, model.model_hash)
    infos = character.store.identity()
    if not any(a.kind == IdentityKind.INVERTED_LATENTS.value for a in infos):
        raise _missing(character)
    latents = character.store.get_identity(IdentityKind.INVERTED_LATENTS)
    meta = dict(latents.metadata["inversion"])
    tensors = dict(latents.tensors)
    for kind in (IdentityKind.INVERSION_OFFSETS, IdentityKind.NULL_TEXT_EMBEDDINGS):
        if any(a.kind == kind.value for a in infos):
            tensors.update(character.store.get_identity(kind).tensors)
    inversion = InversionResult.from_tensors(tensors, meta)
    _check_consistent(character, inversion)
    base = character.store.get_identity(IdentityKind.BASE_IMAGE)
    masks, sources = {}, {}
    for info in infos:
        if info.kind == IdentityKind.MASK.value:
            masks[info.name] = character.store.get_identity(IdentityKind.MASK, name=info.name).tensors["mask"].bool()
            sources[info.name] = info.metadata.get("source", "user")
    return Identity(inversion, base.tensors["pixels"].numpy(), masks, sources, list(base.metadata.get("history", [])))


# masks ------------------------------------------------------------------------------------------------


def set_mask(character: Character, name: str, mask: PIL.Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Store a user-supplied region mask (replacing one derived from the words; kept across reinverts)."""
    validate_slug(name)
    if not has_identity(character):
        raise _missing(character)
    base = character.store.get_identity(IdentityKind.BASE_IMAGE).tensors["pixels"]
    bool_mask = mask_from_image(mask, tuple(base.shape[:2]))
    character.store.put_identity(
        IdentityKind.MASK, {"mask": bool_mask.to(torch.uint8)}, name=name, metadata={"source": "user"}
    )
    log.info("stored the %s mask of %s (%d pixels)", name, character.name, int(bool_mask.sum()))
    return bool_mask


# building -----------------------------------------------------------------------------------------------


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def history_entry(action: str, **details: Any) -> dict[str, Any]:
    return {"action": action, "at": datetime.now(UTC).isoformat(timespec="seconds"), **details}


def _render_base(
    character: Character, model: ModelBundle, opts: IdentityOptions, progress: bool = False
) -> tuple[np.ndarray, torch.Tensor, AttentionStore | None]:
    store = AttentionStore(keep_steps=False, self_max_tokens=0) if opts.mask_method == "attention" else None
    gen = txt2img(
        model, character.prompt, negative=character.negative_prompt, seed=character.seed,
        steps=opts.steps, guidance=opts.guidance, hooks=[AttentionControl([store])] if store else [],
        progress=progress,
    )  # fmt: skip
    return to_uint8(gen.pixels)[0], gen.latents, store


def _replay_attention(model: ModelBundle, inversion: InversionResult) -> AttentionStore:
    """Record the cross-attention of redrawing an inverted picture (for masks of pictures not drawn here)."""
    store = AttentionStore(keep_steps=False, self_max_tokens=0)
    replay(model, inversion, controllers=[store])
    return store


def derive_masks(
    character: Character,
    model: ModelBundle,
    inversion: InversionResult,
    size: tuple[int, int],
    opts: IdentityOptions,
    store: AttentionStore | None = None,
) -> dict[str, tuple[torch.Tensor, list[str]]]:
    """Region -> (bool (H, W) mask, the phrases it was found from), by the options' mask method."""
    prompt = character.prompt
    spans = region_spans(prompt, region_words(character))
    if opts.mask_method == "attention":
        heats = attention_heats(store or _replay_attention(model, inversion), model.tokenizer, prompt, spans)
    else:
        table = character_table(character)
        swaps = {table.neutral_phrase: list(dict.fromkeys(e.phrase for e in table.emotions.values()))}
        clean = inversion.clean_latent.to(model.device, model.dtype)
        alternatives = region_alternatives(prompt, spans, swaps)
        heats = influence_heats(model, clean, prompt, alternatives, seed=character.seed)
    masks = partition(heats, size, opts.mask_floor)
    return {region: (mask, spans[region]) for region, mask in masks.items()}


def _write(
    character: Character,
    model: ModelBundle,
    pixels: np.ndarray,
    inversion: InversionResult,
    masks: Mapping[str, tuple[torch.Tensor, list[str]]],
    method: str,
    history: list[dict[str, Any]],
) -> None:
    """Store the identity in one transaction; stale pieces of an earlier one (other method's tensors,
    lost regions) go in the same transaction, so readers only ever see a complete set."""
    store = character.store
    base = {"pixels": torch.from_numpy(np.array(pixels, dtype=np.uint8))}
    tensors = inversion.tensors()
    puts: list[tuple[Any, ...]] = [
        (IdentityKind.BASE_IMAGE, base, "main", {"history": history}),
        (IdentityKind.INVERTED_LATENTS, {"trajectory": tensors["trajectory"]}, "main",
         {"model_hash": model.model_hash, "look": look_key_of(store.identity()),
          "inversion": {**inversion.metadata(), "extra": {}}}),
    ]  # fmt: skip
    remove: list[tuple[Any, str | None]] = []
    extra = {IdentityKind.INVERSION_OFFSETS: "offsets", IdentityKind.NULL_TEXT_EMBEDDINGS: "uncond_embeddings"}
    for kind, key in extra.items():
        if key in tensors:
            puts.append((kind, {key: tensors[key]}, "main", {"model_hash": model.model_hash}))
        else:
            remove.append((kind, None))
    existing = {a.name: a.metadata.get("source") for a in store.identity() if a.kind == IdentityKind.MASK.value}
    for name, (mask, words) in masks.items():
        if existing.get(name) == "user":
            continue  # a mask the user drew wins over one derived from the words
        puts.append((IdentityKind.MASK, {"mask": mask.to(torch.uint8)}, name,
                     {"source": method, "words": words, "model_hash": model.model_hash}))  # fmt: skip
    for name, source in existing.items():
        if source != "user" and name not in masks:
            remove.append((IdentityKind.MASK, name))
    pause_point("identity-computed")
    store.replace_identity(puts, remove=remove, model_hash=model.model_hash)


def _check_consistent(character: Character, inversion: InversionResult) -> None:
    """The trajectory and the per-step data must describe the same step grid; a mismatch means the
    identity was pieced together from two builds (an interrupted write of an older charforge)."""
    steps = inversion.steps
    rows = {"trajectory": (inversion.trajectory, steps + 1)}
    rows.update({name: (tensor, steps) for name, tensor in inversion.step_tensors.items()})
    for name, (tensor, expected) in rows.items():
        if tensor.shape[0] != expected:
            raise IntegrityError(
                f"the identity of {character.name!r} is inconsistent: {name} has {tensor.shape[0]} rows where "
                f"{expected} belong to its {steps} steps; run `charforge reinvert {character.name}` to rebuild it"
            )
    if len(inversion.timesteps) != steps:
        raise IntegrityError(
            f"the identity of {character.name!r} is inconsistent: {len(inversion.timesteps)} timesteps for "
            f"{steps} steps; run `charforge reinvert {character.name}` to rebuild it"
        )


def _progress(options: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """`progress` rides with the identity options (a `Forge` identity builder takes one mapping) but is
    not one of them: it only shows the rendering and inversion steps."""
    rest = dict(options or {})
    return rest, bool(rest.pop("progress", False))


def build_identity(character: Character, options: Mapping[str, Any] | None = None) -> None:
    """Render the base CG with the character's model, seed and prompt, invert it, derive masks, store all.

    This is the `Forge` identity builder: `Forge.open(..., identity_builder=build_identity)`. Besides the
    `IdentityOptions`, `options` may hold `progress=True` to show the steps.
    """
    _render_and_invert(character, options, [history_entry("create")])


def _render_and_invert(character: Character, options: Mapping[str, Any] | None, history: list[dict[str, Any]]) -> None:
    options, progress = _progress(options)
    opts = identity_options(character, options)
    model = character_model(character)
    log.info("rendering and inverting the base CG of %s (%d steps)", character.name, opts.steps)
    pixels, latents, store = _render_base(character, model, opts, progress)
    inversion = invert_latent(
        model, latents, character.prompt, opts.method, steps=opts.steps, guidance=opts.guidance,
        negative_prompt=character.negative_prompt, progress=progress,
    )  # fmt: skip
    masks = derive_masks(character, model, inversion, pixels.shape[:2], opts, store)
    _write(character, model, pixels, inversion, masks, opts.mask_method, history)


def invert_base(
    character: Character,
    pixels: np.ndarray,
    options: Mapping[str, Any] | None = None,
    history: Sequence[dict[str, Any]] = (),
) -> None:
    """Make `pixels` the character's base picture: invert it with the character's model and prompt."""
    options, progress = _progress(options)
    opts = identity_options(character, options)
    model = character_model(character)
    image = PIL.Image.fromarray(pixels)
    clean = encode_mean(model, prepare_image(model, image))
    inversion = invert_latent(
        model, clean, character.prompt, opts.method, steps=opts.steps, guidance=opts.guidance,
        negative_prompt=character.negative_prompt, progress=progress,
    )  # fmt: skip
    masks = derive_masks(character, model, inversion, pixels.shape[:2], opts)
    _write(character, model, pixels, inversion, masks, opts.mask_method, list(history))


def reinvert(character: Character, *, rerender: bool = False, **options: Any) -> None:
    """Rebuild the identity with the character's current model.

    By default the stored base picture is inverted again, so the character keeps its exact look
    (including adopted inpainting); `rerender=True` (or no identity yet) draws a fresh base CG from
    the prompt and seed instead.
    """
    if not has_identity(character):
        build_identity(character, options)
        return
    base = character.store.get_identity(IdentityKind.BASE_IMAGE)
    history = list(base.metadata.get("history", []))
    if rerender:
        _render_and_invert(character, options, [*history, history_entry("rerender")])
        return
    history.append(history_entry("reinvert", model_hash=current_model_hash(character)))
    if "steps" not in options:  # keep the step grid the identity was built with (`progress` is no option)
        meta = character.store.get_identity(IdentityKind.INVERTED_LATENTS).metadata["inversion"]
        options = {"guidance": meta["guidance"], **options, "steps": meta["steps"]}
    invert_base(character, base.tensors["pixels"].numpy(), options, history)
