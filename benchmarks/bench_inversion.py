"""Inversion quality and cost per method, and an edit's cost against a plain generation, in one run.

The image is a held-out renderer portrait (never seen in training), as in the paper's real-image setting.
Targets: the default method (direct) reconstructs within 0.5 dB of null-text at <= 2x the time of a
plain generation with the same steps; an edit from an inversion costs <= 1.3x a plain generation.
Costs are this process's CPU seconds (torch runs on one thread by default), which a busy shared
machine disturbs far less than wall time; the plain generation, the edit and the edit without the
source shortcut are interleaved and the median of the per-round ratios is reported.

    python benchmarks/bench_inversion.py [--model FOLDER] [--steps 30] [--repeats 3] [--threads 1]
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

import PIL.Image  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402

from charforge.engine import default_model_path, load_model, txt2img  # noqa: E402
from charforge.engine.edit import edit, prompt_edit_controllers, reconstruct  # noqa: E402
from charforge.engine.images import decode_pixels, prepare_image, psnr, unit_pixels  # noqa: E402
from charforge.engine.inversion import DEFAULT_METHOD, METHODS, encode_mean, invert  # noqa: E402
from charforge.recipes.portrait_mini import population, render  # noqa: E402

# A held-out renderer portrait is the "real" image: inverting one of the model's own generations is
# too easy (its latent lies on the sampler's trajectory, so even plain DDIM inversion at high guidance
# finds it again), which hides the failure null-text and direct inversion exist to fix.
PERSON = next(iter(population.sample_portraits(2024, 1, held_out=True))).with_expression("joy", 1.0)
SOURCE = PERSON.caption()  # the shipped model's caption language: the expression is the last two words
TARGET = PERSON.with_expression("sadness", 1.0).caption()


def _model_ref(arg: str | None, scratch: Path) -> tuple[str, str]:
    if arg:
        return arg, arg
    if (default_model_path() / "model_index.json").is_file():
        return str(default_model_path()), "shipped portrait-mini"
    # No shipped model yet: the tiny random test model (costs are meaningful, PSNRs are not).
    threads = torch.get_num_threads()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_tiny_components

    torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline(
        **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(scratch, safe_serialization=True)
    return str(scratch), "tiny random test model"


def _timed(fn):
    """(CPU seconds of this process, result)."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared machine's noise out)")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        ref, label = _model_ref(args.model, Path(scratch))
        model = load_model(ref, device="cpu", dtype=torch.float32)
    steps, guidance = args.steps, args.guidance
    print(f"model: {label} ({model.default_size}px), steps {steps}, guidance {guidance}, threads {args.threads}")

    plain = lambda: txt2img(model, SOURCE, seed=args.seed, steps=steps, guidance=guidance)  # noqa: E731
    image = PIL.Image.fromarray(render.render(PERSON, size=model.default_size)[0])
    pixels = unit_pixels(prepare_image(model, image))
    with torch.no_grad():
        round_trip = decode_pixels(model, encode_mean(model, prepare_image(model, image)))
    vae_db = psnr(round_trip, pixels)
    base = statistics.median(_timed(plain)[0] for _ in range(args.repeats))
    print(f"plain generation: {base:.2f} CPU s (median of {args.repeats})")
    print(f"VAE round trip PSNR: {vae_db:.2f} dB (the ceiling for any inversion)")

    print(f"\n{'method':<16}{'PSNR dB':>9}{'vs VAE':>9}{'CPU s':>10}{'x plain':>9}")
    results, inversions = {}, {}
    for method in args.methods.split(","):
        rounds = 1 if method == "null-text" else args.repeats  # null-text is slow and its cost not in question
        ratios, seconds = [], []
        for _ in range(rounds):
            base_round = _timed(plain)[0]
            spent, inversion = _timed(lambda m=method: invert(model, image, SOURCE, m, steps=steps, guidance=guidance))
            ratios.append(spent / base_round)
            seconds.append(spent)
        db = psnr(reconstruct(model, inversion), pixels)
        results[method], inversions[method] = (db, statistics.median(ratios)), inversion
        print(
            f"{method:<16}{db:>9.2f}{db - vae_db:>9.2f}"
            f"{statistics.median(seconds):>10.2f}{statistics.median(ratios):>9.2f}"
        )

    if DEFAULT_METHOD in results and "null-text" in results:
        gap = results["null-text"][0] - results[DEFAULT_METHOD][0]
        ratio = results[DEFAULT_METHOD][1]
        print(
            f"\ndefault ({DEFAULT_METHOD}) vs null-text: {gap:+.2f} dB (positive: behind; target <= 0.5), "
            f"{ratio:.2f}x a plain generation (target <= 2)"
        )

    inversion = inversions.get(DEFAULT_METHOD) or invert(
        model, image, SOURCE, DEFAULT_METHOD, steps=steps, guidance=guidance
    )
    controllers = lambda: prompt_edit_controllers(model.tokenizer, SOURCE, TARGET, steps=steps)  # noqa: E731
    fast, full = [], []
    for _ in range(args.repeats):
        base = _timed(plain)[0]
        fast.append(_timed(lambda: edit(model, inversion, TARGET, controllers()))[0] / base)
        full.append(_timed(lambda: edit(model, inversion, TARGET, controllers(), shortcut=False))[0] / base)
    print(
        f"\nedit (expression swap, replace cross 0.6 / self 0.4, {DEFAULT_METHOD} inversion): "
        f"{statistics.median(fast):.2f}x a plain generation (target <= 1.3); "
        f"without the source shortcut {statistics.median(full):.2f}x"
    )


if __name__ == "__main__":
    main()
