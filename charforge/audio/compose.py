"""Music longer than one spectrogram tile: continued clips, seamless loops and mood transitions.

A BGM model draws one fixed-size tile (`mini`: 5.94 s). Three compositions of that one sampler:

- **Continuation** (`generate_clip`): tile 1 is plain txt2img; each next tile is outpainted with the
  previous tile's last columns held fixed on its left. The hold is done in latent space with the
  engine's blended-latent hook (`LatentBlend`) on the previous tile's own latents, rather than by
  decoding, re-encoding and calling `inpaint` on pixels: the kept cells are then exactly what the
  previous tile ended on (no VAE round-trip drift, and no encoder pass per tile). Each tile is
  decoded at the model's native width and the decodes are cross-faded over the shared columns,
  where both decoded the same latents and differ only by what the decoder saw around them.
- **Loops** (`make_loop`): cut a whole number of bars found by beat tracking, and fold what follows
  the cut back over the start so the seam is the waveform's own next sample.
- **Transitions** (`transition`): riffusion's recipe. One seed image is img2img'd for every segment
  with the text embeddings linearly interpolated and the starting noise slerped between two seeds,
  so neighbouring segments share the seed image's rhythm and change gradually. The img2img
  strength also rises with the interpolation (see `transition`) so the last segment is the target
  mood itself rather than the target words painted over the first mood's beat.

Every result is decoded from one spectrogram strip in a single Griffin-Lim pass, so phase runs
continuously through tile and segment boundaries (decoding pieces separately and joining the
waveforms would put a phase jump, an audible click, at every join).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import librosa
import numpy as np
import PIL.Image
import torch

from charforge.audio import analysis
from charforge.audio.audiofile import LoopPoints
from charforge.audio.codec import SpectrogramCodec, SpectrogramPreset, get_preset, preset_names
from charforge.audio.levels import limit_peak
from charforge.engine.images import decode_pixels
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import denoise, encode_images, initial_noise, seeded_generators
from charforge.engine.modes import LatentBlend, strength_timesteps
from charforge.engine.prompts import encode_prompts
from charforge.engine.schedulers import make_scheduler, scheduler_key
from charforge.errors import InvalidInput
from charforge.progress import progress as progress_bar

log = logging.getLogger(__name__)

MAX_SECONDS = 600.0
#: Seam cross-fade of `make_loop`: long enough to be inaudible as a fade, short enough not to smear a beat.
LOOP_CROSSFADE_SECONDS = 0.03
#: Fewer tracked beats than this give no trustworthy beat period.
MIN_BEATS = 4
#: How far `make_loop` may move the cut from the bar line to find a smooth, well-matched seam.
LOOP_SEARCH_SECONDS = 0.005


@dataclass(frozen=True)
class Clip:
    """Decoded music and the spectrogram strip it was decoded from."""

    samples: np.ndarray  # float32 mono, peak-safe (levels.limit_peak)
    sample_rate: int
    image: PIL.Image.Image  # the whole spectrogram strip (greyscale, n_mels x total frames)
    loop: LoopPoints | None = None  # set when the clip is meant to repeat (game loop points)

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


# -- geometry ---------------------------------------------------------------------------------


def preset_for(model: ModelBundle) -> SpectrogramPreset:
    """The shipped preset whose tile (n_mels x width) is the model's native image size.

    A spectrogram model only makes sense under the convention it was trained on, and the image size
    is the one thing a diffusers folder records about it.
    """
    height, width = model.default_height_width
    for name in preset_names():
        preset = get_preset(name)
        if (preset.n_mels, preset.width) == (height, width):
            return preset
    known = ", ".join(f"{n} {get_preset(n).n_mels}x{get_preset(n).width}" for n in preset_names())
    raise InvalidInput(
        f"the model draws {height}x{width} (height x width) images, which match no spectrogram preset ({known}); "
        "pass preset= explicitly for a model trained on another convention"
    )


def _resolve_preset(model: ModelBundle, preset: str | SpectrogramPreset | None) -> SpectrogramPreset:
    if model.is_inpainting:
        raise InvalidInput("spectrogram music needs a plain 4-channel UNet, not an inpainting checkpoint")
    p = preset_for(model) if preset is None else get_preset(preset) if isinstance(preset, str) else preset
    factor = model.vae_scale_factor
    if p.n_mels % factor or p.width % factor:
        raise InvalidInput(
            f"preset {p.name!r} tiles are {p.n_mels}x{p.width}, not multiples of the model's VAE factor {factor}"
        )
    return p


def _check_common(steps: int, guidance: float, seeds: dict[str, int]) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidInput(f"steps must be a positive integer, got {steps!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise InvalidInput(f"guidance must be a finite number >= 0, got {guidance!r}")
    for name, seed in seeds.items():
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInput(f"{name} must be a non-negative integer, got {seed!r}")


def _grey(pixels: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) pixels in [0, 1] -> (H, W) float grey, as the codec reads a spectrogram image."""
    return pixels[0].float().mean(dim=0).clamp(0, 1).cpu().numpy()


def _strip_image(grey: np.ndarray) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.round(np.clip(grey, 0.0, 1.0) * 255.0).astype(np.uint8))


def _decode_strip(
    codec: SpectrogramCodec, strip: PIL.Image.Image, seed: int, n_samples: int, high_band: float = 0.0
) -> np.ndarray:
    samples = codec.image_to_audio(strip, seed=seed, high_band=high_band)[:n_samples]
    return limit_peak(samples)


# -- continuation -----------------------------------------------------------------------------


def _tile_seed(seed: int, index: int) -> int:
    """Tile 0 uses `seed` itself (so it is exactly txt2img's image); later tiles get independent streams."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0])


def _sample_tile(
    model: ModelBundle, scheduler: str, steps: int, cond: torch.Tensor, uncond: torch.Tensor | None,
    guidance: float, seed: int, shape: tuple[int, ...], context: torch.Tensor | None, keep_cells: int,
    init: torch.Tensor | None = None, strength: float = 1.0,
) -> torch.Tensor:
    """Final latents of one tile; with `context`, its first `keep_cells` latent columns are held to
    the context's last ones (blended-latent outpainting through the one loop). With `init` pixels
    ((1, 3, H, W) in [0, 1]) the tile is img2img of them at `strength`, drawn as `img2img` draws."""
    sched = make_scheduler(scheduler, model.scheduler.config)
    generators = seeded_generators([seed])
    if init is None:
        sched.set_timesteps(steps, device=model.device)
        timesteps = sched.timesteps
        noise = initial_noise(model, shape, generators)
        latents = noise * sched.init_noise_sigma
    else:
        timesteps = strength_timesteps(model, sched, steps, strength)
        start_latents = encode_images(model, init * 2 - 1, generators)
        noise = initial_noise(model, shape, generators)
        latents = sched.add_noise(start_latents, noise, timesteps[:1])
    hooks = []
    if context is not None and keep_cells > 0:
        source = torch.zeros_like(noise)
        source[..., :keep_cells] = context[..., -keep_cells:]
        repaint = torch.ones((1, 1, *shape[2:]), device=noise.device, dtype=noise.dtype)
        repaint[..., :keep_cells] = 0
        # The held cells start at the first step's noise level rather than as pure noise, so the
        # model sees the context from its first call (the blend hook keeps them there afterwards).
        start = sched.add_noise(source, noise, timesteps[:1])
        latents = repaint * latents + (1 - repaint) * start
        hooks.append(LatentBlend(source, repaint, noise))
    return denoise(model, sched, latents, cond, uncond, guidance, hooks, timesteps=timesteps, generators=generators)


def generate_strip(
    model: ModelBundle,
    prompt: str,
    *,
    seconds: float,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 5.0,
    negative: str = "",
    preset: str | SpectrogramPreset | None = None,
    overlap: float = 0.25,
    scheduler: str = "ddim",
    progress: bool = False,
    init: PIL.Image.Image | np.ndarray | None = None,
    strength: float = 1.0,
) -> PIL.Image.Image:
    """The spectrogram strip of `generate_clip` (n_mels x ceil(seconds / hop) columns), not yet decoded.

    `overlap` is the fraction of a tile held from the previous tile (rounded to whole latent cells);
    0 draws independent tiles side by side. With `init`, a greyscale spectrogram strip as wide as
    the tiles reach (one tile more than `seconds` always is), every tile is img2img of its part of
    `init` at `strength` instead of txt2img (Riffusion's seed-image steering); 1.0 ignores `init`.
    """
    p = _resolve_preset(model, preset)
    _check_common(steps, guidance, {"seed": seed})
    if not 0 < strength <= 1:
        raise InvalidInput(f"strength must be in (0, 1], got {strength!r}")
    scheduler = scheduler_key(scheduler)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SECONDS:
        raise InvalidInput(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds!r}")
    if not 0 <= overlap < 1:
        raise InvalidInput(f"overlap must be in [0, 1), got {overlap!r}")
    n_samples = max(1, round(seconds * p.sample_rate))
    columns = -(-n_samples // p.hop_length)
    factor = model.vae_scale_factor
    width_cells = p.width // factor
    keep_cells = min(round(overlap * width_cells), width_cells - 1)
    if overlap > 0:
        keep_cells = max(keep_cells, 1)
    keep = keep_cells * factor
    advance = p.width - keep
    n_tiles = 1 + max(0, -(-(columns - p.width) // advance))
    reach, seed_strip = p.width + (n_tiles - 1) * advance, None
    if init is not None and strength < 1:
        seed_strip = np.asarray(init.convert("L") if isinstance(init, PIL.Image.Image) else init)
        if seed_strip.ndim != 2 or seed_strip.shape[0] != p.n_mels or seed_strip.shape[1] < reach:
            raise InvalidInput(f"init strip is {seed_strip.shape}; the tiles need {p.n_mels} rows, {reach} columns")
    log.info("BGM clip: %d column(s) in %d tile(s) of %d, %d held", columns, n_tiles, p.width, keep)

    cond = encode_prompts(model, [prompt])
    uncond = encode_prompts(model, [negative]) if guidance > 1 else None
    shape = (1, model.latent_channels, p.n_mels // factor, width_cells)
    strip = np.zeros((p.n_mels, reach), dtype=np.float32)
    ramp = (np.arange(keep, dtype=np.float32) + 0.5) / max(keep, 1)  # weight of the newer tile
    previous = None
    for index in progress_bar(range(n_tiles), enabled=progress, desc="BGM tiles"):
        left = index * advance
        tile_init = None if seed_strip is None else _seed_pixels(seed_strip[:, left : left + p.width], p, model)
        latents = _sample_tile(model, scheduler, steps, cond, uncond, guidance, _tile_seed(seed, index), shape,
                               previous, keep_cells, tile_init, strength)  # fmt: skip
        grey = _grey(decode_pixels(model, latents))
        if index == 0 or keep == 0:
            strip[:, left : left + p.width] = grey
        else:
            shared = strip[:, left : left + keep]
            strip[:, left : left + keep] = shared * (1 - ramp) + grey[:, :keep] * ramp
            strip[:, left + keep : left + p.width] = grey[:, keep:]
        previous = latents
    return _strip_image(strip[:, :columns])


def generate_clip(
    model: ModelBundle,
    prompt: str,
    *,
    seconds: float,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 5.0,
    negative: str = "",
    preset: str | SpectrogramPreset | None = None,
    overlap: float = 0.25,
    scheduler: str = "ddim",
    progress: bool = False,
    high_band: float = 0.0,
) -> Clip:
    """`seconds` of music for `prompt`: one tile, continued by outpainting for as long as needed,
    decoded as one strip (same arguments, same samples; `high_band`: see `codec.replicate_octaves`)."""
    p = _resolve_preset(model, preset)
    strip = generate_strip(
        model, prompt, seconds=seconds, seed=seed, steps=steps, guidance=guidance, negative=negative, preset=p,
        overlap=overlap, scheduler=scheduler, progress=progress,
    )  # fmt: skip
    n_samples = max(1, round(seconds * p.sample_rate))
    return Clip(_decode_strip(SpectrogramCodec(p), strip, seed, n_samples, high_band), p.sample_rate, strip)


# -- loops ------------------------------------------------------------------------------------


def _beats(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Tracked beat positions (samples) and the tempo they were tracked at.

    The tempo comes from `analysis.estimate_tempo` (the project's measured estimator) and the beats
    from librosa's dynamic-programming tracker on the same low-band onset envelope, where BGM keeps
    its kick and bass.
    """
    bpm = analysis.estimate_tempo(samples, sample_rate)
    onset = librosa.onset.onset_strength(
        y=samples, sr=sample_rate, hop_length=analysis.TEMPO_HOP, n_mels=analysis.BEAT_BAND_MELS,
        fmax=analysis.BEAT_BAND_HZ,
    )  # fmt: skip
    _, beats = librosa.beat.beat_track(
        onset_envelope=onset, sr=sample_rate, hop_length=analysis.TEMPO_HOP, bpm=bpm, units="samples"
    )
    return np.asarray(beats, dtype=np.float64), bpm


def _beat_grid(beats: np.ndarray, bpm: float, sample_rate: int) -> tuple[float, float]:
    """(first beat, beat period) in samples, by least squares over the tracked beats.

    One beat position is quantised to the onset hop (~12 ms); fitting a line through every beat,
    each numbered by its nearest whole period (so a missed beat does not shift the count), gives
    the period to a fraction of a sample, which matters once it is multiplied by 16 beats. Beats
    off that grid by more than a quarter period (the tracker's guesses at the clip's ends) are
    left out of the fit.
    """
    period = 60.0 * sample_rate / bpm
    index = np.round((beats - beats[0]) / period)
    offset = float(np.median(beats - index * period))
    for tolerance in (0.25, 0.1):  # a coarse pass against the estimated tempo, then against the fit
        on_grid = np.abs(beats - (offset + index * period)) < tolerance * period
        if np.unique(index[on_grid]).size >= 2:
            period, offset = np.polyfit(index[on_grid], beats[on_grid], 1)
    first = index[on_grid][0] if on_grid.any() else 0.0
    return float(offset + period * first), float(period)


def make_loop(
    samples: np.ndarray,
    sample_rate: int,
    *,
    beats_per_bar: int = 4,
    crossfade: float = LOOP_CROSSFADE_SECONDS,
    min_seconds: float | None = None,
) -> np.ndarray:
    """A seamlessly repeatable piece of `samples`, whole bars long, from the first tracked beat.

    How long: with `min_seconds`, the fewest whole bars that last at least that long (the length is
    rounded up to a bar at the tempo the beat tracker hears, never down; InvalidInput if the clip
    does not hold them); without, as many whole bars as fit.

    The cut sits a whole number of bars after the start, moved by at most `LOOP_SEARCH_SECONDS`
    to where the waveform changes slowly and what follows the cut best matches the loop's start.
    What follows the cut is then cross-faded (`crossfade` seconds, raised cosine) over the loop's
    first samples: played in a loop, the last sample is followed by the sample that really followed
    it, so the seam is as smooth as the music itself. The bar's downbeat is not known (the tracker
    finds beats, not bars), so the loop starts on a beat and is whole bars long.
    """
    y = limit_peak(samples)  # validates: mono, finite
    if sample_rate <= 0:
        raise InvalidInput(f"sample rate must be positive, got {sample_rate}")
    if isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, (int, np.integer)) or beats_per_bar < 1:
        raise InvalidInput(f"beats_per_bar must be a positive integer, got {beats_per_bar!r}")
    if not 0 < crossfade <= 1:
        raise InvalidInput(f"crossfade must be in (0, 1] seconds, got {crossfade!r}")
    if y.size < 2 * sample_rate:
        raise InvalidInput(f"need at least 2 s of audio to find a beat, got {y.size / sample_rate:.2f} s")
    beats, bpm = _beats(y, sample_rate)
    if beats.size < MIN_BEATS:
        raise InvalidInput(
            f"found only {beats.size} beat(s) at ~{bpm:.0f} bpm: the clip is too short or has no steady beat for a loop"
        )
    first, period = _beat_grid(beats, bpm, sample_rate)
    fade = max(2, round(crossfade * sample_rate))
    search = max(1, round(LOOP_SEARCH_SECONDS * sample_rate))
    bar = beats_per_bar * period
    start = max(0, int(round(first)))
    room = math.floor((y.size - search - fade - start) / bar)
    shortest = 0 if min_seconds is None else math.ceil(min_seconds * sample_rate)
    bars = room if min_seconds is None else max(1, math.ceil(shortest / bar))
    if bars < 1 or bars > room:
        held = "no whole bar" if room < 1 else f"only {room} whole bar(s), {bars} needed for {min_seconds:g} s,"
        raise InvalidInput(
            f"the clip holds {held} after its first beat at {60 * sample_rate / period:.0f} bpm "
            f"({beats_per_bar} beats per bar, {bar / sample_rate:.2f} s)"
        )
    end = _best_cut(y, start, int(round(start + bars * bar)), fade, search, start + shortest)
    loop = y[start:end].copy()
    fade_out = (np.cos(np.linspace(0.0, np.pi, fade, endpoint=False)) * 0.5 + 0.5).astype(np.float32)
    loop[:fade] = fade_out * y[end : end + fade] + (1 - fade_out) * loop[:fade]
    log.info("loop: %d bar(s) at %.1f bpm, %.3f s", bars, 60 * sample_rate / period, loop.size / sample_rate)
    return limit_peak(loop)


def _best_cut(y: np.ndarray, start: int, end: int, fade: int, search: int, earliest: int = 0) -> int:
    """The cut in end +- search (not before `earliest`) whose continuation best matches the loop start,
    among smooth ones.

    Smooth: the natural step at the cut, which becomes the seam, is at most the clip's median step.
    Matched: the least squared difference between the two signals the cross-fade mixes.
    """
    lo, hi = max(end - search, start + 1, earliest), min(end + search, y.size - fade)
    candidates = np.arange(lo, hi + 1)
    windows = np.lib.stride_tricks.sliding_window_view(y[lo : hi + fade], fade)
    mismatch = np.mean((windows - y[start : start + fade]) ** 2, axis=1)
    steps = np.abs(y[candidates] - y[candidates - 1])
    smooth = steps <= np.median(np.abs(np.diff(y)))
    if smooth.any():
        mismatch = np.where(smooth, mismatch, np.inf)
    return int(candidates[int(np.argmin(mismatch))])


# -- transitions ------------------------------------------------------------------------------


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian noise keeps its norm (a plain mix of two draws is too quiet
    in the middle and the sampler would treat it as a less noisy latent)."""
    if alpha == 0:
        return a
    if alpha == 1:
        return b
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = torch.clamp(torch.dot(a64, b64) / (a64.norm() * b64.norm()), -1.0, 1.0)
    if abs(float(cos)) > 0.9995:  # nearly parallel: the sine formula loses precision
        return torch.lerp(a, b, alpha)
    theta = torch.arccos(cos)
    mixed = (torch.sin((1 - alpha) * theta) * a64 + torch.sin(alpha * theta) * b64) / torch.sin(theta)
    return mixed.reshape(a.shape).to(a.dtype)


def _seed_pixels(image: PIL.Image.Image | np.ndarray, p: SpectrogramPreset, model: ModelBundle) -> torch.Tensor:
    grey = np.asarray(image.convert("L") if isinstance(image, PIL.Image.Image) else image, dtype=np.float32)
    if grey.shape != (p.n_mels, p.width):
        raise InvalidInput(f"seed image is {grey.shape[0]}x{grey.shape[1]}; preset {p.name!r} tiles are "
                           f"{p.n_mels}x{p.width} (height x width) greyscale")
    pixels = torch.from_numpy(grey / 255.0)[None, None].expand(1, 3, -1, -1)
    return pixels.to(model.device, torch.float32)


def transition(
    model: ModelBundle,
    prompt_from: str,
    prompt_to: str,
    *,
    segments: int,
    seed_from: int = 0,
    seed_to: int = 1,
    steps: int = 20,
    guidance: float = 5.0,
    strength: float = 0.75,
    preset: str | SpectrogramPreset | None = None,
    progress: bool = False,
    negative: str = "",
    scheduler: str = "ddim",
    seed_image: PIL.Image.Image | np.ndarray | None = None,
) -> Clip:
    """`segments` tiles moving from `prompt_from` to `prompt_to`, as one continuous file.

    Segment i (alpha = i / (segments - 1)) img2img's one seed image (`seed_image`, by default the
    txt2img tile of `prompt_from` with `seed_from`) with text embeddings lerped from one prompt's to
    the other's, the starting noise slerped from `seed_from`'s to `seed_to`'s, and strength
    `strength + (1 - strength) * alpha`. Riffusion keeps the strength fixed so every segment keeps
    the seed image's beat; with the strength rising, the first segment is exactly img2img of the
    seed image for `prompt_from`, and the last is exactly txt2img of `prompt_to` with `seed_to`
    (strength 1 starts from pure noise), so the transition ends at the target mood's own tempo and
    mode instead of the target words over the starting mood's rhythm. The negative prompt's
    embedding is shared by both ends, so the unconditional branch needs no interpolation.
    """
    p = _resolve_preset(model, preset)
    _check_common(steps, guidance, {"seed_from": seed_from, "seed_to": seed_to})
    scheduler = scheduler_key(scheduler)
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 2:
        raise InvalidInput(f"a transition needs segments >= 2, got {segments!r}")
    if not 0 < strength <= 1:
        raise InvalidInput(f"strength must be in (0, 1], got {strength!r}")
    if int(steps * strength) < 1:
        raise InvalidInput(f"strength {strength} with {steps} steps leaves the first segment no step; raise either")

    factor = model.vae_scale_factor
    shape = (1, model.latent_channels, p.n_mels // factor, p.width // factor)
    cond_from = encode_prompts(model, [prompt_from])
    cond_to = encode_prompts(model, [prompt_to])
    uncond = encode_prompts(model, [negative]) if guidance > 1 else None
    if seed_image is None:
        seed_latents = _sample_tile(model, scheduler, steps, cond_from, uncond, guidance, seed_from, shape, None, 0)
        pixels = decode_pixels(model, seed_latents)
    else:
        pixels = _seed_pixels(seed_image, p, model)

    # Draw in the order img2img and txt2img draw, so the end segments equal theirs.
    from_gen = seeded_generators([seed_from])
    source = encode_images(model, pixels * 2 - 1, from_gen)
    noise_from = initial_noise(model, shape, from_gen)
    to_gen = seeded_generators([seed_to])
    noise_to = initial_noise(model, shape, to_gen)
    # Stochastic samplers draw per-step noise too: each segment gets a copy of the nearer end's
    # generator as it stands after the draws above, so every segment is reproducible on its own.
    states = (from_gen[0].get_state(), to_gen[0].get_state())

    strip = np.zeros((p.n_mels, segments * p.width), dtype=np.float32)
    for index in progress_bar(range(segments), enabled=progress, desc="BGM transition"):
        alpha = index / (segments - 1)
        seg_strength = 1.0 if index == segments - 1 else min(1.0, strength + (1 - strength) * alpha)
        cond = cond_from if alpha == 0 else cond_to if alpha == 1 else torch.lerp(cond_from, cond_to, alpha)
        noise = slerp(noise_from, noise_to, alpha)
        sched = make_scheduler(scheduler, model.scheduler.config)
        generators = [torch.Generator("cpu").set_state(states[0] if alpha < 0.5 else states[1])]
        if seg_strength >= 1.0:
            sched.set_timesteps(steps, device=model.device)
            timesteps, latents = sched.timesteps, noise * sched.init_noise_sigma
        else:
            timesteps = strength_timesteps(model, sched, steps, seg_strength)
            latents = sched.add_noise(source, noise, timesteps[:1])
        final = denoise(model, sched, latents, cond, uncond, guidance, (), timesteps=timesteps, generators=generators)
        strip[:, index * p.width : (index + 1) * p.width] = _grey(decode_pixels(model, final))
    image = _strip_image(strip)
    samples = _decode_strip(SpectrogramCodec(p), image, seed_from, strip.shape[1] * p.hop_length)
    return Clip(samples, p.sample_rate, image)
