"""Region masks of a character's base CG (face, hair, outfit, background), found from the prompt's words.

Each region is named by words of the prompt ("hair" with its modifiers "long red"; the face by
eyes, skin and the expression phrase). Two ways to find where those words act are offered:

- `attention`: where the words' cross-attention lands while the picture is drawn (Prompt-to-Prompt's
  local blend does the same). Sharp on models whose attention localises.
- `influence`: where the UNet's noise prediction on the noised base latent changes when the region's
  description is changed in the text (the expression phrase swapped for the other expressions; a
  colour swapped for the prompt's other colours), at a few timesteps. This is DiffEdit's mask
  (Couairon et al. 2022: the difference of two noise estimates) and also works when attention is
  spread evenly, as in small models that read their prompt through the values rather than through
  where they attend. The text is changed and encoded again, not just some embedding columns: CLIP's
  causal text encoder carries each word into every later position.

Regions then compete per latent cell (standardised heat, highest wins), so masks never overlap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from charforge.engine import ModelBundle, encode_text
from charforge.engine.attention import AttentionStore
from charforge.engine.attention.tokens import word_columns
from charforge.errors import InvalidInput

# Words whose place marks each region; the character's neutral expression phrase is added to the face.
REGION_WORDS: dict[str, tuple[str, ...]] = {
    "face": ("face", "eyes", "skin", "glasses"),
    "hair": ("hair", "hat"),
    "outfit": ("outfit", "dress", "shirt", "jacket"),
    "background": ("background",),
}
# Words that describe the picture as a whole, never a region's look.
_FRAME_WORDS = {
    "portrait",
    "photo",
    "picture",
    "of",
    "a",
    "an",
    "the",
    "girl",
    "boy",
    "woman",
    "man",
    "with",
    "and",
    "in",
}
MODIFIERS = 2  # words before a region word that describe it ("long red" hair)
INFLUENCE_TIMESTEPS = (0.3, 0.5, 0.7)  # fractions of the training schedule
INFLUENCE_DRAWS = 2  # noise draws per timestep


def region_spans(prompt: str, regions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Region -> the phrases of `prompt` that describe it: each region word with up to two modifiers
    before it in its comma-separated part ("long red hair", "green eyes", "looking calm")."""
    chunks = [chunk.split() for chunk in prompt.lower().split(",")]
    out: dict[str, list[str]] = {}
    for region, words in regions.items():
        spans = []
        for word in words:
            needle = word.lower().split()
            for chunk in chunks:
                for start in range(len(chunk) - len(needle) + 1):
                    if chunk[start : start + len(needle)] != needle:
                        continue
                    first = start
                    while first > 0 and start - first < MODIFIERS and chunk[first - 1] not in _FRAME_WORDS:
                        first -= 1
                    spans.append(" ".join(chunk[first : start + len(needle)]))
        if spans:
            out[region] = list(dict.fromkeys(spans))
    return out


def span_columns(tokenizer: Any, prompt: str, spans: Sequence[str]) -> list[int]:
    columns: set[int] = set()
    for span in spans:
        columns.update(word_columns(tokenizer, prompt.lower(), span))
    return sorted(columns)


def attention_heats(
    store: AttentionStore, tokenizer: Any, prompt: str, spans: Mapping[str, Sequence[str]]
) -> dict[str, torch.Tensor]:
    """Region -> (h, w) cross-attention to its phrases, averaged over the recorded steps and layers."""
    average = store.average_cross(0)
    return {region: average[..., span_columns(tokenizer, prompt, s)].sum(-1) for region, s in spans.items()}


def replace_words(prompt: str, old: str, new: str) -> str:
    """`prompt` with every whole-word, case-insensitive occurrence of `old` replaced by `new`."""
    return re.sub(rf"(?<![\w]){re.escape(old)}(?![\w])", new, prompt, flags=re.IGNORECASE)


def region_alternatives(
    prompt: str,
    spans: Mapping[str, Sequence[str]],
    swaps: Mapping[str, Sequence[str]] | None = None,
    limit: int = 8,
) -> dict[str, list[str]]:
    """Region -> prompts that describe that region differently and everything else the same.

    A phrase listed in `swaps` (the neutral expression) is replaced by each of its alternatives (the
    other expressions); otherwise the word before a phrase's last word (its colour, as in "red hair")
    is replaced by the corresponding words of the other regions' phrases.
    """
    swaps = {k.lower(): list(v) for k, v in (swaps or {}).items()}
    # describing words (colours, sizes), not verbs such as "wearing"
    modifiers = [
        p.split()[-2] for phrases in spans.values() for p in phrases
        if len(p.split()) >= 2 and p not in swaps and not p.split()[-2].endswith("ing")
    ]  # fmt: skip
    out: dict[str, list[str]] = {}
    for region, phrases in spans.items():
        prompts: list[str] = []
        for phrase in phrases:
            words = phrase.split()
            if phrase in swaps:
                replacements = [alt for alt in swaps[phrase] if alt.lower() != phrase]
            elif len(words) >= 2 and words[-2] in modifiers:
                others = [m for m in dict.fromkeys(modifiers) if m != words[-2]]
                replacements = [" ".join([*words[:-2], m, words[-1]]) for m in others]
            else:
                replacements = []
            prompts += [replace_words(prompt, phrase, r) for r in replacements]
        prompts = [p for p in dict.fromkeys(prompts) if p != prompt][:limit]
        if prompts:
            out[region] = prompts
    return out


@torch.no_grad()
def influence_heats(
    model: ModelBundle, clean: torch.Tensor, prompt: str, alternatives: Mapping[str, Sequence[str]], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Region -> (h, w) mean size of the change in predicted noise between `prompt` and the region's alternatives."""
    if not alternatives:
        return {}
    texts = [prompt, *(p for prompts in alternatives.values() for p in prompts)]
    factor = model.vae_scale_factor
    embeds = encode_text(model, texts).with_size(model, clean.shape[-2] * factor, clean.shape[-1] * factor)
    generator = torch.Generator("cpu").manual_seed(seed)
    change = torch.zeros(len(texts) - 1, *clean.shape[-2:])
    train_steps = model.scheduler.config.num_train_timesteps
    # noised the way the UNet was trained (alphas_cumprod), whichever sampler the model ships with
    noiser = DDPMScheduler.from_config(model.scheduler.config)
    for fraction in INFLUENCE_TIMESTEPS:
        t = torch.tensor(int(fraction * train_steps), device=model.device)
        for _ in range(INFLUENCE_DRAWS):
            noise = torch.randn(clean.shape, generator=generator).to(clean)
            noisy = noiser.add_noise(clean, noise, t)
            eps = model.unet(noisy.expand(len(texts), -1, -1, -1), t, **embeds.unet_kwargs(), return_dict=False)[0]
            change += (eps[1:] - eps[:1]).float().pow(2).sum(dim=1).sqrt().cpu()
    heats, start = {}, 0
    for region, prompts in alternatives.items():
        heats[region] = change[start : start + len(prompts)].mean(0)
        start += len(prompts)
    return heats


def partition(heats: Mapping[str, torch.Tensor], size: tuple[int, int], floor: float = 0.0) -> dict[str, torch.Tensor]:
    """Bool (H, W) masks: each cell goes to the region with the highest standardised heat (averaged
    over the cell's 3x3 neighbourhood), if that reaches `floor` standard deviations above the
    region's mean (else to none)."""
    if not heats:
        return {}
    names = list(heats)
    stack = torch.stack([heats[n].float() for n in names])
    # regions are blobs, not speckle: judge each cell with its neighbours
    stack = F.avg_pool2d(stack[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    flat = stack.flatten(1)
    z = (stack - flat.mean(1)[:, None, None]) / flat.std(1).clamp_min(1e-12)[:, None, None]
    winner = z.argmax(0)
    out = {}
    for index, name in enumerate(names):
        cells = ((winner == index) & (z[index] >= floor)).float()[None, None]
        mask = F.interpolate(cells, size=size, mode="nearest")[0, 0].bool()
        if mask.any():
            out[name] = mask
    return out


def mask_from_image(image: PIL.Image.Image | np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A user's mask picture -> bool (H, W): white (>= half) is inside. Must match the base CG's size."""
    if isinstance(image, PIL.Image.Image):
        array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    else:
        array = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float().numpy()
        if array.ndim == 3:
            array = array.mean(axis=-1 if array.shape[-1] in (1, 3, 4) else 0)
        if array.max(initial=0.0) > 1.0:
            array = array / 255.0
    if array.ndim != 2:
        raise InvalidInput(f"a mask must be one 2-D picture, got shape {tuple(array.shape)}")
    if tuple(array.shape) != tuple(size):
        raise InvalidInput(
            f"mask is {array.shape[1]}x{array.shape[0]} but the base CG is {size[1]}x{size[0]}; they must match"
        )
    mask = torch.from_numpy(array >= 0.5)
    if not mask.any():
        raise InvalidInput("mask is empty: paint the region white on black")
    return mask
