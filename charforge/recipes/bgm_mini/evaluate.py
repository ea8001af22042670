"""Does a BGM model follow mood? Mode against the sign of valence, tempo against arousal.

Clips are generated from `mood_prompt` at the four corners of the valence/arousal square (the same
words the model was trained on), decoded with the codec and measured with `analysis`, whose
estimators are themselves checked on labelled procedural music (tests/test_audio_analysis.py).
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from charforge.audio import analysis
from charforge.recipes.bgm_mini.dataset import LEADS, mood_prompt
from charforge.audio.codec import SpectrogramCodec
from charforge.errors import InvalidInput

log = logging.getLogger(__name__)

CORNERS = ((-0.7, -0.7), (-0.7, 0.7), (0.7, -0.7), (0.7, 0.7))


def evaluate_bgm(
    model: str | Path | Any, clips: int = 40, steps: int = 20, guidance: float = 5.0, seed: int = 0,
    batch: int = 4, preset: str = "mini",
) -> dict[str, Any]:
    """Generate `clips` clips (spread over the corners and leads) and return the figures as a dict."""
    from charforge.engine import load_model, txt2img

    if clips < len(CORNERS) or batch < 1 or steps < 1:
        raise InvalidInput(f"need clips >= {len(CORNERS)}, batch >= 1 and steps >= 1")
    bundle = model if hasattr(model, "unet") else load_model(model)
    codec = SpectrogramCodec(preset)
    p = codec.preset
    plan = [(CORNERS[i % 4], LEADS[(i // 4) % len(LEADS)], seed + i) for i in range(clips)]
    rows: list[dict[str, Any]] = []
    gen_seconds = decode_seconds = 0.0
    for start in tqdm(range(0, clips, batch), desc="evaluate BGM", mininterval=5.0):
        chunk = plan[start:start + batch]
        t0 = time.perf_counter()
        out = txt2img(bundle, [mood_prompt(v, a, lead) for (v, a), lead, _ in chunk], seed=[s for *_, s in chunk],
                      steps=steps, guidance=guidance, width=p.width, height=p.n_mels)
        gen_seconds += time.perf_counter() - t0
        grey = (out.pixels.float().mean(dim=1).clamp(0, 1) * 255).round().byte().cpu().numpy()
        for ((v, a), lead, s), image in zip(chunk, grey):
            t0 = time.perf_counter()
            audio = codec.image_to_audio(image, seed=s)
            decode_seconds += time.perf_counter() - t0
            key = analysis.estimate_key(audio, p.sample_rate)
            rows.append({"valence": v, "arousal": a, "lead": lead, "seed": s, "mode": key.mode,
                         "mode_margin": key.mode_margin, "bpm": analysis.estimate_tempo(audio, p.sample_rate)})
    wanted = ["major" if r["valence"] > 0 else "minor" for r in rows]
    high = [r["bpm"] for r in rows if r["arousal"] > 0]
    low = [r["bpm"] for r in rows if r["arousal"] < 0]
    audio_seconds = clips * p.seconds_per_image
    return {
        "clips": clips,
        "steps": steps,
        "guidance": guidance,
        "mode_accuracy": float(np.mean([r["mode"] == w for r, w in zip(rows, wanted)])),
        "major_accuracy": float(np.mean([r["mode"] == "major" for r in rows if r["valence"] > 0])),
        "minor_accuracy": float(np.mean([r["mode"] == "minor" for r in rows if r["valence"] < 0])),
        "median_bpm_high_arousal": statistics.median(high),
        "median_bpm_low_arousal": statistics.median(low),
        "median_bpm_difference": statistics.median(high) - statistics.median(low),
        "realtime_factor_generate": audio_seconds / gen_seconds,
        "realtime_factor_generate_and_decode": audio_seconds / (gen_seconds + decode_seconds),
        "rows": rows,
    }


def vae_mode_survival(model: str | Path | Any, samples: int = 24, seed: int = 99, preset: str = "mini") -> dict[str, float]:
    """Share of held-out training-style spectrograms whose measured mode survives the model's VAE.

    The diffusion model can only be as faithful as its autoencoder: a minor third the VAE blurs
    into a major one is lost before sampling starts. Also reports the mean absolute pixel error.
    """
    import torch

    from charforge.recipes.bgm_mini.dataset import BGMSource
    from charforge.engine import load_model

    bundle = model if hasattr(model, "unet") else load_model(model)
    source = BGMSource(seed, samples, preset)
    codec = SpectrogramCodec(preset)
    sr = codec.preset.sample_rate
    kept = before = 0
    errors = []
    for i in tqdm(range(samples), desc="VAE round trip", mininterval=5.0):
        x, _ = source[i]
        with torch.no_grad():
            z = bundle.vae.encode(x[None].to(bundle.device, bundle.vae.dtype)).latent_dist.mean
            y = bundle.vae.decode(z).sample[0].float().cpu()
        grey = ((y.mean(dim=0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        errors.append(float(np.abs(grey.astype(np.float32) - source.image(i).astype(np.float32)).mean()))
        truth = source.sample(i).spec.mode
        before += analysis.estimate_key(codec.image_to_audio(source.image(i), seed=0), sr).mode == truth
        kept += analysis.estimate_key(codec.image_to_audio(grey, seed=0), sr).mode == truth
    return {"samples": samples, "mode_accuracy_codec_only": before / samples,
            "mode_accuracy_through_vae": kept / samples, "mean_abs_pixel_error": float(np.mean(errors))}


def evaluate_transitions(
    model: str | Path | Any, count: int = 8, segments: int = 3, steps: int = 20, guidance: float = 5.0, seed: int = 0,
    preset: str = "mini",
) -> dict[str, Any]:
    """Do transitions start in one mood and end in the other? Alternating sad/calm <-> happy/energetic,
    the first and last segments of each file are measured like the clips of `evaluate_bgm`."""
    from charforge.audio.compose import transition
    from charforge.engine import load_model

    if count < 2 or segments < 2:
        raise InvalidInput("need at least 2 transitions of at least 2 segments")
    bundle = model if hasattr(model, "unet") else load_model(model)
    p = SpectrogramCodec(preset).preset
    ends = ((-0.7, -0.7), (0.7, 0.7))
    rows: list[dict[str, Any]] = []
    for i in tqdm(range(count), desc="evaluate transitions", mininterval=5.0):
        start, end = ends if i % 2 == 0 else ends[::-1]
        clip = transition(bundle, mood_prompt(*start), mood_prompt(*end), segments=segments, seed_from=seed + i,
                          seed_to=seed + i + 1000, steps=steps, guidance=guidance, preset=p)
        tile = p.samples_per_image
        first, last = clip.samples[:tile], clip.samples[-tile:]
        rows.append({
            "from": start, "to": end,
            "first_mode": analysis.estimate_key(first, p.sample_rate).mode,
            "last_mode": analysis.estimate_key(last, p.sample_rate).mode,
            "first_bpm": analysis.estimate_tempo(first, p.sample_rate),
            "last_bpm": analysis.estimate_tempo(last, p.sample_rate),
        })

    def mode(v: float) -> str:
        return "major" if v > 0 else "minor"

    return {
        "transitions": count,
        "segments": segments,
        "first_segment_mode_matches": float(np.mean([r["first_mode"] == mode(r["from"][0]) for r in rows])),
        "last_segment_mode_matches": float(np.mean([r["last_mode"] == mode(r["to"][0]) for r in rows])),
        "tempo_moves_with_arousal": float(np.mean([(r["last_bpm"] - r["first_bpm"]) * (r["to"][1] - r["from"][1]) > 0
                                                   for r in rows])),
        "rows": rows,
    }
