"""Edits from an inversion: the source and target prompts denoised together in one loop call.

Row 0 is the source branch and follows the inversion (null-text embeddings, direct offsets), rows
1.. are the edited prompts; attention controllers make the targets borrow the source's attention,
so what the prompts share (identity, outfit, background, composition) stays while the changed words
take effect. With identical prompts and a replace controller the source image comes back exactly
under null-text and negative-prompt inversion (both rows get the same corrections); direct inversion
corrects only the source row, as the method prescribes, and the target comes close through the
copied attention.

The source costs as little as possible: under direct and negative-prompt inversion it needs no
unconditional pass, and once no controller reads its attention it is not computed at all (its latent
is known from the inversion). That is what keeps an edit close to the cost of a plain generation.

`replay` is the one path from an inversion to latents: reconstructions, edits, attention maps of
inverted pictures and a character's emotion edits all go through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import PIL.Image
import torch

from charforge.engine.attention import (
    AttentionControl,
    AttentionStore,
    Controller,
    LocalBlend,
    MutualSelfAttention,
    Refine,
    Replace,
    Reweight,
    render_map,
    word_columns,
)
from charforge.engine.hooks import Hook
from charforge.engine.images import ImageInput, decode_pixels, to_pil
from charforge.engine.inversion import (
    DDIMInversion,
    InversionResult,
    check_model,
    get_method,
    inversion_schedulers,
    invert,
)
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import denoise
from charforge.engine.modes import txt2img
from charforge.engine.prompts import PromptEmbeds, encode_text
from charforge.errors import InvalidInput


def replay(
    model: ModelBundle,
    inversion: InversionResult,
    targets: str | Sequence[str] | PromptEmbeds | torch.Tensor = (),
    controllers: Sequence[Controller] = (),
    *,
    source_prompt: str | None = None,
    shortcut: bool = True,
    offset_targets: bool = False,
    hooks: Sequence[Hook] = (),
    progress: bool = False,
) -> torch.Tensor:
    """Denoise from the inversion's x_T: THE way anything is redrawn from an inversion.

    Row 0 is the source, held on the inversion by its method's replay hooks; rows 1.. are `targets`,
    given as prompts or as their conditioning (`PromptEmbeds`, or bare (n, L, D) embeddings for SD
    1.x/2.x), such as blends of prompts.
    `controllers` run in one `AttentionControl` after the method's hooks, then `hooks`. With no
    targets this is a reconstruction. `source_prompt` defaults to the prompt the image was inverted
    with (null-text embeddings and direct offsets were fitted to it). `shortcut=False` computes the
    source branch in full every step, for comparisons; the result is the same up to floating-point
    error. `offset_targets` gives the targets the direct-inversion offsets too (see
    `charforge.engine.inversion.direct.FollowOffsets`). Returns the final latents, one row per branch.
    """
    check_model(model, inversion)
    method = get_method(inversion.method)
    scheduler, _ = inversion_schedulers(model, inversion.steps)
    source = inversion.prompt if source_prompt is None else source_prompt
    cond, uncond = method.source_embeddings(model, inversion, source)
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(targets, torch.Tensor):
        targets = PromptEmbeds(targets)
    if isinstance(targets, PromptEmbeds):
        cond = PromptEmbeds.cat([cond, targets.to(cond.embeds.device, cond.embeds.dtype)])
    elif targets:  # encoded behind the source, in one batch: batched text-encoder matmuls round by batch
        cond = PromptEmbeds.cat([cond, encode_text(model, [source, *targets]).rows(range(1, len(targets) + 1))])
    control = AttentionControl(controllers) if controllers else None
    follow = method.replay_hooks(
        inversion,
        needs_source=control.needs_source if control else None,
        shortcut=shortcut and len(cond) > 1,  # a lone source cannot be left out
        offset_targets=offset_targets,
    )
    own = [*follow, control] if control else follow
    start = inversion.x_T.to(model.device, model.dtype).expand(len(cond), -1, -1, -1).clone()
    return denoise(model, scheduler, start, cond, uncond, inversion.guidance, [*own, *hooks], progress=progress)


def reconstruct_latents(model: ModelBundle, inversion: InversionResult, progress: bool = False) -> torch.Tensor:
    """Redraw the inverted latent at the inversion's guidance, computing the source branch in full."""
    return replay(model, inversion, progress=progress)


def reconstruct(model: ModelBundle, inversion: InversionResult, progress: bool = False) -> torch.Tensor:
    """The redrawn image, pixels in [0, 1] (1, 3, H, W)."""
    return decode_pixels(model, reconstruct_latents(model, inversion, progress))


@dataclass
class EditResult:
    """Final latents of every branch (row 0 = source) and the decoded targets, pixels in [0, 1]."""

    latents: torch.Tensor
    pixels: torch.Tensor
    source_pixels: torch.Tensor | None = None

    @property
    def images(self) -> list[PIL.Image.Image]:
        return to_pil(self.pixels)


def edit(
    model: ModelBundle,
    inversion: InversionResult,
    target_prompt: str | Sequence[str],
    controllers: Sequence[Controller] = (),
    *,
    source_prompt: str | None = None,
    shortcut: bool = True,
    offset_targets: bool = False,
    decode_source: bool = False,
    hooks: Sequence[Hook] = (),
    progress: bool = False,
) -> EditResult:
    """Redraw the inverted image with `target_prompt` (one or several), steered by `controllers`,
    and decode the targets (and the source with `decode_source`). Options as for `replay`."""
    targets = [target_prompt] if isinstance(target_prompt, str) else list(target_prompt)
    if not targets:
        raise InvalidInput("no target prompt given")
    latents = replay(
        model, inversion, targets, controllers, source_prompt=source_prompt, shortcut=shortcut,
        offset_targets=offset_targets, hooks=hooks, progress=progress,
    )  # fmt: skip
    pixels = decode_pixels(model, latents if decode_source else latents[1:])
    if decode_source:
        return EditResult(latents, pixels[1:], pixels[:1])
    return EditResult(latents, pixels)


def prompt_edit_controllers(
    tokenizer: object,
    source: str,
    target: str,
    *,
    blend_words: Sequence[str] = (),
    reweight: Mapping[str, float] | None = None,
    masactrl: bool = False,
    steps: int = 50,
    cross_replace_steps: float = 0.6,
    self_replace_steps: float = 0.4,
    masactrl_start: float = 0.08,
    blend_threshold: float = 0.3,
) -> list[Controller]:
    """The usual controller set for one source -> target edit, as the CLI builds it.

    A word swap (same word count) uses replace, otherwise refine; MasaCtrl replaces both for non-rigid
    edits (its mutual self-attention and Prompt-to-Prompt's self-attention copy pull different
    ways). Reweight and local blend stack on top of either.
    """
    controllers: list[Controller] = []
    if masactrl:
        controllers.append(MutualSelfAttention(start_step=round(masactrl_start * steps)))
    else:
        schedule = dict(cross_replace_steps=cross_replace_steps, self_replace_steps=self_replace_steps)
        same_length = len(source.split()) == len(target.split())
        controllers.append((Replace if same_length else Refine)(tokenizer, source, [target], **schedule))
    if reweight:
        controllers.append(Reweight.from_words(tokenizer, target, reweight, branch=1))
    if blend_words:
        controllers.append(LocalBlend(tokenizer, [source, target], blend_words, threshold=blend_threshold))
    return controllers


def word_attention(
    model: ModelBundle,
    prompt: str,
    word: str,
    image: ImageInput | None = None,
    *,
    steps: int = 30,
    seed: int = 0,
    progress: bool = False,
) -> PIL.Image.Image:
    """Where `word` of `prompt` attends, laid over the picture: a generated one, or `image` (then
    `prompt` describes it; it is DDIM-inverted at guidance 1 and redrawn while the maps are recorded)."""
    word_columns(model.tokenizer, prompt, word)  # fails fast, naming the word, before any sampling
    store = AttentionStore(self_max_tokens=0)
    if image is None:
        base = txt2img(model, prompt, seed=seed, steps=steps, hooks=[AttentionControl([store])], progress=progress)
        picture = base.images[0]
    else:
        inversion = invert(model, image, prompt, DDIMInversion.name, steps=steps, guidance=1.0, progress=progress)
        replay(model, inversion, controllers=[store], progress=progress)
        picture = image if isinstance(image, PIL.Image.Image) else None
    heat = store.word_map(model.tokenizer, prompt, word)
    size = picture.size if picture is not None else (store.latent_shape[1] * model.vae_scale_factor,
                                                     store.latent_shape[0] * model.vae_scale_factor)
    return render_map(heat, size, picture)
