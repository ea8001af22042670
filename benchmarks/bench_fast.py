"""The few-step student (portrait-mini-fast: 4 LCM steps, one UNet call each) vs its teacher
(portrait-mini: 25 DDIM steps, classifier-free guidance 5, two UNet rows per step) through charforge's
txt2img, on the same prompts and seeds.

Target (issue 16): ratio (student / teacher) <= 1/8 = 0.125. Runs are interleaved per prompt and the
medians compared, so load from other processes hits both sides alike. Text encoding and VAE decoding
are included: they are what a caller waits for.

    python benchmarks/bench_fast.py [--student DIR] [--teacher DIR] [--prompts 8] [--repeats 3] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from charforge.engine import load_model, txt2img  # noqa: E402
from charforge.models import default_model_path, fast_model_path  # noqa: E402


def prompts(count: int) -> list[str]:
    """Captions of held-out identities (the evaluation's kind of prompt), fixed by seed."""
    from charforge.recipes.portrait_mini.population import sample_portraits

    return [p.caption() for p in sample_portraits(2024, count, held_out=True, min_intensity=0.3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=str(fast_model_path()))
    parser.add_argument("--teacher", default=str(default_model_path()))
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="the student's LCM steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared machine's noise out)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = load_model(args.teacher, device="cpu", dtype=torch.float32)
    student = load_model(args.student, device="cpu", dtype=torch.float32)
    if not student.embeds_guidance:
        raise SystemExit(f"{args.student} is not a guidance-embedding student (no time_cond_proj_dim)")
    calls = {"teacher": 0, "student": 0}
    for name, model in (("teacher", teacher), ("student", student)):
        model.unet.register_forward_pre_hook(lambda *_a, _n=name: calls.__setitem__(_n, calls[_n] + 1))

    def run_teacher(prompt: str, seed: int) -> None:
        txt2img(teacher, prompt, seed=seed, steps=25, guidance=5.0, scheduler="ddim")

    def run_student(prompt: str, seed: int) -> None:
        txt2img(student, prompt, seed=seed, steps=args.steps, guidance=5.0, scheduler="lcm")

    run_teacher(prompts(1)[0], 0)
    run_student(prompts(1)[0], 0)
    calls.update(teacher=0, student=0)
    times: dict[str, list[float]] = {"teacher": [], "student": []}
    for _ in range(args.repeats):
        for seed, prompt in enumerate(prompts(args.prompts)):
            for name, fn in (("teacher", run_teacher), ("student", run_student)):
                started = time.perf_counter()
                fn(prompt, seed)
                times[name].append(time.perf_counter() - started)
    images = args.repeats * args.prompts
    t, s = statistics.median(times["teacher"]), statistics.median(times["student"])
    rows = (("teacher 25 DDIM steps, CFG 5", "teacher", t), (f"student {args.steps:2d} LCM steps, w=5  ", "student", s))
    for label, name, median in rows:
        print(f"{label}: median {median * 1000:8.1f} ms/image, {calls[name] / images:.0f} UNet calls")
    print(f"ratio student/teacher = {s / t:.3f}  (target <= 0.125; {images} images each, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
