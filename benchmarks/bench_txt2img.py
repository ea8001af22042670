"""charforge txt2img vs diffusers' StableDiffusionPipeline on the same model, same seed and steps.

Target: ratio (charforge / diffusers) <= 1.05, i.e. the one readable loop with its hooks costs no more
than the stock pipeline. Runs are interleaved and the median is reported, so load from other processes
hits both sides alike.

    python benchmarks/bench_txt2img.py [--model FOLDER] [--steps 20] [--repeats 7] [--size 64] [--threads 1]
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402

from charforge.engine import default_model_path, load_model, make_scheduler, txt2img  # noqa: E402

PROMPT = "portrait of a girl with long red hair, green eyes, smiling"
NEGATIVE = "blurry"


def _model_ref(arg: str | None, scratch: Path) -> str:
    if arg:
        return arg
    if (default_model_path() / "model_index.json").is_file():
        return str(default_model_path())
    # No shipped model yet: the tiny random test model (measures pure loop overhead, the worst case).
    threads = torch.get_num_threads()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_tiny_components  # its import pins torch threads for tests: keep ours

    torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline(
        **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(scratch, safe_serialization=True)
    return "tiny random test model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's)")
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared machine's noise out)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="charforge-bench-") as scratch:
        ref = _model_ref(args.model, Path(scratch))
        model = load_model(scratch if ref.startswith("tiny") else ref, device="cpu", dtype=torch.float32)
    size = args.size or model.default_size
    pipe = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
        scheduler=make_scheduler(args.scheduler, model.scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)

    def ours() -> np.ndarray:
        result = txt2img(model, PROMPT, negative=NEGATIVE, seed=1, steps=args.steps, scheduler=args.scheduler,
                         width=size, height=size)  # fmt: skip
        return result.pixels.permute(0, 2, 3, 1).numpy()

    def theirs() -> np.ndarray:
        return pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=args.steps, width=size, height=size,
                    generator=torch.Generator("cpu").manual_seed(1), output_type="np").images  # fmt: skip

    difference = float(np.abs(ours() - theirs()).max())  # also the warm-up
    times: dict[str, list[float]] = {"charforge": [], "diffusers": []}
    for _ in range(args.repeats):
        for name, run in (("charforge", ours), ("diffusers", theirs)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    ours_s, theirs_s = statistics.median(times["charforge"]), statistics.median(times["diffusers"])
    print(f"model: {ref}  size: {size}x{size}  steps: {args.steps}  scheduler: {args.scheduler}  "
          f"threads: {torch.get_num_threads()}")  # fmt: skip
    print(f"max abs pixel difference: {difference:.2e}")
    print(f"charforge txt2img: {ours_s * 1000:.1f} ms (median of {args.repeats})")
    print(f"diffusers pipeline: {theirs_s * 1000:.1f} ms (median of {args.repeats})")
    print(f"ratio charforge/diffusers: {ours_s / theirs_s:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
