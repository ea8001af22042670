"""Throughput of `charforge regenerate`: states denoised together in one UNet batch vs one at a time.

    python benchmarks/bench_regenerate.py [--model DIR] [--batches 1,2,4,8,16] [--repeats 3] [--threads 1]
                                          [--ray-workers 0]

One character (identity built once, default model unless --model) is copied into a fresh workspace
for every run, so every run renders exactly the same 16 states (the eight basis emotions at 0.5 and
1.0) through the real path: plan -> job rows -> atomic claims -> `feel_many` -> stored PNGs -> done.
Batch 1 is the naive loop (one state per denoising call); the others denoise `batch` states per call.
Runs are interleaved over repeats; reported are medians of assets per second of wall time and of this
process's CPU time (torch on --threads threads; CPU time is what a busy shared machine disturbs
least), and each batch's ratio to batch 1. With --ray-workers N the same 16 jobs also run on a local
Ray instance with N actors (one model load each) against the local backend with N worker processes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from charforge.character.identity import build_identity, character_model  # noqa: E402
from charforge.emotion import BASIS  # noqa: E402
from charforge.forge import Forge  # noqa: E402
from charforge.jobs import Request, regenerate  # noqa: E402

PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"
REQUEST = Request(("mira",), BASIS, (0.5, 1.0))


def run_once(
    template: Path, scratch: Path, batch: int, *, backend: str = "local", workers: int = 1
) -> tuple[float, float, int]:
    """(wall s, CPU s, assets rendered) of regenerating REQUEST in a fresh copy of the template."""
    target = scratch / f"run-{time.monotonic_ns()}"
    shutil.copytree(template, target)
    with Forge.open(target) as forge:
        wall, cpu = time.perf_counter(), time.process_time()
        result = regenerate(forge, REQUEST, batch=batch, backend=backend, workers=workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    shutil.rmtree(target)
    assert result.summary.failed == 0, result.summary.errors
    return wall, cpu, result.summary.rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped portrait-mini)")
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("CHARFORGE_TORCH_THREADS", "1")))
    parser.add_argument("--ray-workers", type=int, default=0, help="also compare Ray with N actors (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        template, scratch = Path(tmp) / "template", Path(tmp) / "scratch"
        scratch.mkdir()
        with Forge.open(template, identity_builder=build_identity) as forge:
            mira = forge.create("mira", prompt=PROMPT, seed=7, model=args.model)
            model = character_model(mira)
            steps = mira.store.get_identity("inverted_latents").metadata["inversion"]["steps"]
        run_once(template, scratch, max(batches))  # warm-up: model load, allocations
        rates: dict[int, list[float]] = {b: [] for b in batches}
        cpu_rates: dict[int, list[float]] = {b: [] for b in batches}
        for _ in range(args.repeats):
            for batch in batches:
                wall, cpu, rendered = run_once(template, scratch, batch)
                assert rendered == len(BASIS) * 2
                rates[batch].append(rendered / wall)
                cpu_rates[batch].append(rendered / cpu)
        med = {b: statistics.median(v) for b, v in rates.items()}
        cpu_med = {b: statistics.median(v) for b, v in cpu_rates.items()}
        base = batches[0]
        print(f"model {model.source} ({model.short_hash}), {steps} steps, {args.threads} threads, "
              f"{len(BASIS) * 2} states per run, {args.repeats} repeats (medians)")
        print(f"{'batch':>5} {'assets/s (wall)':>16} {'x naive':>8} {'assets/CPU s':>13} {'x naive':>8}")
        for batch in batches:
            print(f"{batch:>5} {med[batch]:>16.3f} {med[batch] / med[base]:>8.2f} {cpu_med[batch]:>13.3f} "
                  f"{cpu_med[batch] / cpu_med[base]:>8.2f}")
        best = max(batches, key=lambda b: med[b])
        print(f"best batch by wall throughput: {best} ({med[best] / med[base]:.2f}x the one-state-at-a-time loop)")

        if args.ray_workers:
            local = [run_once(template, scratch, best, workers=args.ray_workers) for _ in range(args.repeats)]
            ray = [
                run_once(template, scratch, best, backend="ray", workers=args.ray_workers) for _ in range(args.repeats)
            ]
            local_rate = statistics.median(r / w for w, _, r in local)
            ray_rate = statistics.median(r / w for w, _, r in ray)
            print(f"{args.ray_workers} workers, batch {best}: local processes {local_rate:.3f} assets/s, "
                  f"ray actors {ray_rate:.3f} assets/s ({ray_rate / local_rate:.2f}x)")


if __name__ == "__main__":
    main()
