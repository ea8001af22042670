"""How a character's emotion edits are drawn: the plan (rows, Prompt-to-Prompt controls, edit
strengths, the face mask), then one of two samplers of the one loop.

The teacher replays the base CG's inversion (`edit_latents`): row 0 the source, held on the inverted
trajectory, rows 1.. the state's branches, steered by Prompt-to-Prompt replace/refine and reweight,
each row's change from the source scaled by its edit strength, and a local blend keeping every latent
outside the dilated face mask equal to the source's at every step.

A few-step student (`fast_edit_latents`) re-noises with fresh noise after each step, so it has no
deterministic trajectory to invert and replay. It edits the base CG the way
blended-latent inpainting does instead: the base CG's latent is noised to the student's first
timestep with one noise shared by every row; the source row (the base prompt) and the target rows
are denoised together in one loop call under the same plan (the source's prediction read from the
source row itself); and after every step, outside the face mask, every row is the base latent noised
to that step's level (`LatentBlend`), clean after the last one. The LCM steps draw their fresh noise
from one seed per row, the same for every row. `Character.feel` does not use it (yet): measured by
`charforge eval emotions --mode fast`, its edits miss the emotion-edit targets (the student's card).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from charforge.character.identity import Identity
from charforge.emotion.conditioning import Conditioning, ExpressionTable
from charforge.engine import ModelBundle, cached_model, decode_pixels, encode_text, prepare_image, to_uint8
from charforge.engine.attention import AttentionControl, Controller, LocalBlend, Refine, Replace, Reweight
from charforge.engine.attention.tokens import chunk_count, max_columns, word_columns
from charforge.engine.edit import replay
from charforge.engine.edit_strength import EditStrength
from charforge.engine.inversion import encode_mean
from charforge.engine.loop import denoise, initial_noise, seeded_generators
from charforge.engine.modes import LatentBlend
from charforge.engine.schedulers import make_scheduler
from charforge.errors import InvalidInput, NotFound
from charforge.models import student_path

log = logging.getLogger(__name__)


def latent_mask(mask: torch.Tensor, factor: int, dilation: int, edge: float = 1.0) -> torch.Tensor:
    """Pixel mask (H, W) -> latent cells (h, w) holding any masked pixel, grown by `dilation` cells;
    the d-th ring of growth weighs `edge ** d` (1 inside the mask): the share of its change an edit
    keeps there (`feather`)."""
    cells = F.max_pool2d(mask.float()[None, None], kernel_size=factor, stride=factor)
    rings = cells
    for d in range(1, dilation + 1):
        grown = F.max_pool2d(cells, kernel_size=2 * d + 1, stride=1, padding=d)
        rings = torch.maximum(rings, grown * edge**d)
    return rings[0, 0]


def feather(latents: torch.Tensor, source: torch.Tensor, cells: torch.Tensor | None) -> torch.Tensor:
    """Final latents keep only `cells`' share of their change from `source` (rows 1..; row 0 is the source's).

    The sampling loop blends with the hard mask, so the face is drawn whole; fading the change out over
    the dilation only at the end keeps the decoder, whose receptive field spans several cells, from
    carrying a full-strength change at the mask's edge into the pixels beyond it. Blending the soft
    weights at every step instead compounds them (0.9 per step left the ring almost unchanged).
    """
    if cells is None or bool(((cells == 0) | (cells == 1)).all()):
        return latents
    weight = cells.to(latents.device, latents.dtype)
    return torch.cat([latents[:1], source + weight * (latents[1:] - source)])


def pixel_mask(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Latent cells (h, w) -> the bool pixel mask (H, W) they cover."""
    return F.interpolate(cells.float()[None, None], size=size, mode="nearest")[0, 0].bool()


def decode_pictures(model: ModelBundle, latents: torch.Tensor) -> list[np.ndarray]:
    """Latents -> uint8 (H, W, 3) pictures."""
    return to_uint8(decode_pixels(model, latents))


def composite(pictures: Sequence[np.ndarray], base: np.ndarray, cells: torch.Tensor) -> list[np.ndarray]:
    """Each picture inside the latent-cell mask, the base outside it.

    Outside the mask an edit's latents are the base's, but decoding is not exact (the VAE's loss on a
    picture it did not draw, its receptive field across the border), so the base's own pixels go there.
    """
    inside = pixel_mask(cells, base.shape[:2]).numpy()[..., None]
    return [np.where(inside, p, base) for p in pictures]


def edit_mask(model: ModelBundle, identity: Identity, table: ExpressionTable) -> torch.Tensor | None:
    """The latent cells (h, w) an expression edit may change, and by how much (1 in the region, fading
    over its dilation): the dilated region mask, if there is one."""
    region = table.edit.region
    if region not in identity.masks:
        return None
    return latent_mask(identity.masks[region], model.vae_scale_factor, table.edit.mask_dilation, table.edit.mask_edge)


def part_maps(model: ModelBundle, identity: Identity, table: ExpressionTable) -> dict[str, torch.Tensor]:
    """Latent (h, w) maps of the face parts a mixture blends: "upper" (brows, eyes) above
    `edit.part_split` of the face region's height, "lower" (mouth) below, with a one-cell ramp between."""
    h, w = identity.inversion.x_T.shape[-2:]
    region = identity.masks.get(table.edit.region)
    top, bottom = 0.0, float(h * model.vae_scale_factor)
    if region is not None and bool(region.any()):
        rows = torch.nonzero(region.any(1)).flatten()
        top, bottom = float(rows[0]), float(rows[-1] + 1)
    split = (top + table.edit.part_split * (bottom - top)) / model.vae_scale_factor  # in latent cells
    centres = torch.arange(h, dtype=torch.float32) + 0.5
    lower = (centres - split + 0.5).clamp(0.0, 1.0)[:, None].expand(h, w)
    return {"upper": 1.0 - lower, "lower": lower.clone()}


@dataclass
class EditPlan:
    """What one edit call of a character draws: the target prompts (rows 1..), the attention
    controllers, each conditioning's rows with their edit strengths, the row of each picture and the
    edit mask's cells (None: the edit is confined by attention instead)."""

    targets: list[str]
    controllers: list[Controller]
    groups: list[dict[int, float | torch.Tensor]]
    first_rows: list[int]  # 0 (the source), then one row per conditioning
    cells: torch.Tensor | None


def edit_plan(
    model: ModelBundle, identity: Identity, conds: Sequence[Conditioning], table: ExpressionTable
) -> EditPlan:
    """The rows and controls of an emotion edit, the same whichever model draws it.

    Each conditioning is drawn by its branches (one prompt, or one per emotion when composed); the
    rows of one conditioning are kept one picture by `EditStrength`.
    """
    tokenizer = model.tokenizer
    source = identity.inversion.prompt
    per_cond = [c.branches() for c in conds]
    branches = [b for bs in per_cond for b in bs]
    targets = [b.prompt for b in branches]
    schedule = dict(cross_replace_steps=table.edit.cross_replace, self_replace_steps=table.edit.self_replace)
    word_swap = all(len(t.split()) == len(source.split()) for t in targets)
    controllers: list[Controller] = [(Replace if word_swap else Refine)(tokenizer, source, targets, **schedule)]
    chunks = chunk_count(tokenizer, source)  # targets are encoded in as many chunks as the source
    weights = {}
    for row, b in enumerate(branches, start=1):
        weight_row = torch.ones(max_columns(tokenizer, source))
        for words, weight in b.weights.items():
            try:
                weight_row[word_columns(tokenizer, b.prompt, words, chunks)] = weight
            except InvalidInput as error:  # the composed prompt holds its words: they were cut off with its tail
                log.warning("%s; drawn unweighted", error)
        weights[row] = weight_row
    controllers.append(Reweight(weights))

    cells = edit_mask(model, identity, table)
    if cells is not None:
        controllers.append(LocalBlend(mask=(cells > 0).float()))
    else:  # no mask of the region: confine the edit to where the expression words attend
        log.warning("no %r mask; limiting the edit to where the expression words attend", table.edit.region)
        words = list(dict.fromkeys(t.words for c in conds for t in c.terms))
        controllers.append(LocalBlend(tokenizer, [source, *targets], words, dilation=table.edit.mask_dilation))

    parts = part_maps(model, identity, table)
    groups: list[dict[int, float | torch.Tensor]] = []
    first_rows, row = [0], 1
    for bs in per_cond:
        group: dict[int, float | torch.Tensor] = {}
        for k, b in enumerate(bs):
            shares = sum(share * parts[p] for p, share in b.parts.items()) if b.parts else 1.0
            group[row + k] = b.strength * shares
        groups.append(group)
        first_rows.append(row)
        row += len(group)
    return EditPlan(targets, controllers, groups, first_rows, cells)


def edit_latents(
    model: ModelBundle, identity: Identity, conds: Sequence[Conditioning], table: ExpressionTable,
    progress: bool = False,
) -> torch.Tensor:
    """Final latents of an edit call: row 0 the source (the base CG's latent), then one row per conditioning,
    replayed from the base CG's inversion."""
    plan = edit_plan(model, identity, conds, table)
    hooks = [EditStrength(identity.inversion.trajectory, plan.groups)]
    latents = replay(model, identity.inversion, plan.targets, plan.controllers, hooks=hooks, progress=progress)[
        plan.first_rows
    ]
    return feather(latents, latents[:1], plan.cells)


# the few-step student --------------------------------------------------------------------------------

FAST_STEPS = 4  # the student's steps: one UNet call each
FAST_STRENGTH = 1.0  # fraction of the noise schedule redrawn inside the face (LCM img2img `strength`)
FAST_SEED = 0


def student_of(model_ref: str | os.PathLike | None) -> ModelBundle:
    """The few-step student of a character's model, loaded once per process; one clear error if it has none."""
    folder = student_path(model_ref)
    if folder is None:
        raise NotFound(f"no few-step student is installed for the model {model_ref or 'portrait-mini'} "
                       "(only the shipped portrait model has one)")  # fmt: skip
    return cached_model(folder)


def fast_edit_latents(
    student: ModelBundle,
    identity: Identity,
    conds: Sequence[Conditioning],
    table: ExpressionTable,
    *,
    steps: int = FAST_STEPS,
    strength: float = FAST_STRENGTH,
    seed: int = FAST_SEED,
    progress: bool = False,
) -> torch.Tensor:
    """Final latents of a fast edit call: row 0 the source, then one row per conditioning (as `edit_latents`)."""
    if not student.embeds_guidance:
        raise InvalidInput(f"{student.source} is not a few-step student (its UNet takes no guidance input)")
    cells = edit_mask(student, identity, table)
    if cells is None:
        raise InvalidInput(f"a fast edit needs the character's {table.edit.region!r} mask")
    plan = edit_plan(student, identity, conds, table)
    source = identity.inversion.prompt
    chunks = chunk_count(student.tokenizer, source)
    cond = encode_text(student, [source, *plan.targets], min_chunks=chunks, max_chunks=chunks)
    rows = len(cond)

    scheduler = make_scheduler("lcm", student.scheduler.config)
    scheduler.set_timesteps(steps, device=student.device, strength=strength)
    base = encode_mean(student, prepare_image(student, PIL.Image.fromarray(identity.base))).expand(rows, -1, -1, -1)
    generators = seeded_generators([seed] * rows)  # one noise for every row, at the start and at each step
    noise = initial_noise(student, tuple(base.shape), generators)
    start = scheduler.add_noise(base, noise, scheduler.timesteps[:1].repeat(rows))
    mask = (cells > 0).to(student.device, student.dtype)[None, None].expand(rows, 1, -1, -1)
    hooks = [AttentionControl(plan.controllers), EditStrength(None, plan.groups), LatentBlend(base, mask, noise)]
    latents = denoise(
        student, scheduler, start, cond, None, identity.inversion.guidance, hooks,
        generators=generators, progress=progress,
    )  # fmt: skip
    return feather(latents[plan.first_rows], base[:1], cells)
