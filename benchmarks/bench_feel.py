"""Cost of an emotion edit against a plain generation at equal steps, and of a cached feel.

    python benchmarks/bench_feel.py [--model DIR] [--steps 20] [--repeats 5]

Interleaves, in one process on the same model: (a) a plain txt2img of the character's prompt,
(b) `Character.feel` of a state not rendered before (inversion-based Prompt-to-Prompt edit with
reweight and masked local blend, PNG encoding and storing included), and (c) `Character.feel` of a
state already rendered (the state cache). Costs of (a) and (b) are this process's CPU seconds
(torch on one thread), which a busy shared machine disturbs far less than wall time; the edit/plain
ratio is the median of per-round ratios (target <= 1.3). The cached feel is wall-clock latency,
state recorded in the history as a chat front end would (target <= 50 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from charforge.character.identity import build_identity, character_model  # noqa: E402
from charforge.engine import txt2img  # noqa: E402
from charforge.forge import Forge  # noqa: E402

PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped portrait-mini)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("CHARFORGE_TORCH_THREADS", "1")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp, Forge.open(tmp, identity_builder=build_identity) as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=7, model=args.model, build_options={"steps": args.steps})
        model = character_model(mira)
        inversion_steps = mira.store.get_identity("inverted_latents").metadata["inversion"]["steps"]
        guidance = mira.store.get_identity("inverted_latents").metadata["inversion"]["guidance"]
        emotions = ["joy", "sadness", "anger", "fear", "surprise", "disgust"]

        def plain(i: int) -> None:
            txt2img(model, PROMPT, seed=100 + i, steps=inversion_steps, guidance=guidance)

        def edit(i: int) -> None:
            result = mira.feel({emotions[i % len(emotions)]: 0.5 + 0.05 * (i // len(emotions))}, record=False)
            assert not result.cached

        plain(-1), edit(len(emotions) * 9)  # warm-up: first calls pay for allocations
        mira.feel(joy=0.9, record=False)
        times: dict[str, list[float]] = {"plain": [], "edit": [], "cached": [], "ratio": []}
        for i in range(args.repeats):
            for name, run in (("plain", plain), ("edit", edit)):
                start = time.process_time()
                run(i)
                times[name].append(time.process_time() - start)
            times["ratio"].append(times["edit"][-1] / times["plain"][-1])
            start = time.perf_counter()
            cached = mira.feel(joy=0.9)  # recorded: what a chat front end does on every message
            times["cached"].append(time.perf_counter() - start)
            assert cached.cached

        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"model {model.source} ({model.short_hash}), {inversion_steps} steps, guidance {guidance}, "
              f"{args.threads} threads, {args.repeats} repeats (medians)")
        print(f"plain txt2img           {med['plain'] * 1000:8.1f} CPU ms")
        print(f"emotion edit (feel)     {med['edit'] * 1000:8.1f} CPU ms")
        print(f"edit / plain            {med['ratio']:8.2f} x   (target <= 1.3)")
        print(f"cached feel             {med['cached'] * 1000:8.1f} ms  (target <= 50)")


if __name__ == "__main__":
    main()
