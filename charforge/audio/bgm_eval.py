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
from charforge.audio.bgm_dataset import LEADS, mood_prompt
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

    from charforge.audio.bgm_dataset import BGMSource
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
