"""Realtime factor of BGM generation: seconds of music per second of wall time, on 2 CPU threads.

Target (issue #17): >= 2x realtime for generation + decode + loudness normalisation (a 10 s clip in
<= 5 s). Times the two halves separately (generation: the sketch, its encoding and the diffusion,
`generate_strip`; decoding: pitch anchoring, Griffin-Lim and BS.1770 normalisation) for two variants
in one run, interleaved round by round so load from other processes hits both alike, and prints the
medians and the variant ratio.

    python benchmarks/bench_bgm.py [--model FOLDER | --random-weights] [--seconds 10]
                                   [--compare sketch|steps|overlap] [--repeats 3] [--threads 2]

--compare sketch (the default): the sketch-steered default path (moods.toml's [sketch] and high_band)
vs the model drawing from the prompt alone with no high band (the path before it).
--compare steps: 20 steps vs 10 (unsteered).  --compare overlap: overlap 0.25 (the default) vs 0 (unsteered).
Without --model the shipped charforge/models/bgm-mini is used. --random-weights builds the same
architecture (charforge.recipes.bgm_mini.train) with random weights instead: the timing is the trained
model's, the music is noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from charforge.audio.codec import SpectrogramCodec  # noqa: E402
from charforge.audio.compose import generate_strip, preset_for  # noqa: E402
from charforge.audio.loudness import normalize_loudness  # noqa: E402
from charforge.audio.mood import plan_music  # noqa: E402
from charforge.audio.steer import anchor_pitch, sketch_image  # noqa: E402
from charforge.engine import load_model  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "charforge" / "models" / "bgm-mini"
PLAN = plan_music(0.6, 0.6)  # the shipped table: sketch-steered
PROMPT = PLAN.prompt
VARIANTS = {
    "sketch": (("sketch-steered", {"sketch": True}), ("unsteered", {})),
    "steps": (("20 steps", {"steps": 20}), ("10 steps", {"steps": 10})),
    "overlap": (("overlap 0.25", {"overlap": 0.25}), ("overlap 0", {"overlap": 0.0})),
}


def _random_bgm_model(folder: Path) -> Path:
    """charforge-mini-bgm's architecture with random weights, saved as a diffusers folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from charforge.recipes.bgm_mini.train import bgm_spec

    spec = bgm_spec(folder / "tokenizer")
    torch.manual_seed(0)
    StableDiffusionPipeline(
        vae=AutoencoderKL(**spec.vae_config), unet=UNet2DConditionModel(**spec.unet_config),
        text_encoder=CLIPTextModel(CLIPTextConfig(**spec.text_config)), tokenizer=spec.tokenizer,
        scheduler=DDIMScheduler(**spec.scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder / "model", safe_serialization=True)  # fmt: skip
    return folder / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help=f"a BGM diffusers folder (default: {DEFAULT_MODEL})")
    source.add_argument("--random-weights", action="store_true", help="time the bgm-mini architecture untrained")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--compare", choices=sorted(VARIANTS), default="sketch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="charforge-bench-bgm-") as scratch:
        if args.random_weights:
            folder, label = _random_bgm_model(Path(scratch)), "bgm-mini architecture, random weights"
        else:
            folder = args.model or DEFAULT_MODEL
            if not (folder / "model_index.json").is_file():
                sys.exit(f"no BGM model at {folder}: pass --model FOLDER, or --random-weights to time the architecture")
            label = str(folder)
        model = load_model(folder, device="cpu", dtype=torch.float32)
    preset = preset_for(model)
    codec = SpectrogramCodec(preset)

    generate_strip(model, PROMPT, seconds=preset.seconds_per_image, steps=2)  # warm-up (allocations, kernels)
    generation: dict[str, list[float]] = {name: [] for name, _ in VARIANTS[args.compare]}
    decoding: dict[str, list[float]] = {name: [] for name, _ in VARIANTS[args.compare]}
    for round_index in range(args.repeats):
        for name, kwargs in VARIANTS[args.compare]:
            kwargs, sketch = dict(kwargs), None
            start = time.perf_counter()
            if kwargs.pop("sketch", False):  # what charforge.audio.steer.steered_clip does, in two halves
                sketch = sketch_image(PLAN, round_index, args.seconds + preset.seconds_per_image, preset)
                kwargs.update(init=sketch, strength=PLAN.sketch.strength)
            strip = generate_strip(model, PROMPT, seconds=args.seconds, seed=round_index, **kwargs)
            middle = time.perf_counter()
            high_band = 0.0
            if sketch is not None:  # the default path also fills the high band (moods.toml's high_band)
                strip = anchor_pitch(strip, sketch.crop((0, 0, strip.width, preset.n_mels)), preset, PLAN.sketch)
                high_band = PLAN.high_band
            samples = codec.image_to_audio(strip, seed=round_index, high_band=high_band)
            normalize_loudness(samples, preset.sample_rate)
            generation[name].append(middle - start)
            decoding[name].append(time.perf_counter() - middle)

    print(f"model: {label}  preset: {preset.name}  clip: {args.seconds:g} s  prompt: {PROMPT!r}  "
          f"threads: {torch.get_num_threads()}  rounds: {args.repeats} (medians)")  # fmt: skip
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load + args.threads > cores + 0.5:
        # Intra-op threads spin at every op's barrier; when another process holds a core, each op
        # waits for a time slice and a 40 ms UNet call can take seconds.
        print(f"note: load average {load:.1f} on {cores} cores: other processes hold cores these threads need; "
              "figures are pessimistic" + (" (compare --threads 1)" if args.threads > 1 else ""))
    totals = {}
    for name, _ in VARIANTS[args.compare]:
        gen, dec = statistics.median(generation[name]), statistics.median(decoding[name])
        totals[name] = gen + dec
        print(f"{name:>13}: generate {gen:6.2f} s ({args.seconds / gen:5.2f}x realtime)   decode {dec:5.2f} s   "
              f"generate+decode {gen + dec:6.2f} s ({args.seconds / (gen + dec):5.2f}x realtime; target >= 2x)")
    (a, _), (b, _) = VARIANTS[args.compare]
    print(f"ratio {a} / {b} (generate+decode time): {totals[a] / totals[b]:.2f}  "
          f"(generate only: {statistics.median(generation[a]) / statistics.median(generation[b]):.2f})")


if __name__ == "__main__":
    main()
