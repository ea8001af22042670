"""Cost of an emotion edit drawn by the few-step student against the teacher's, on the same character.

    python benchmarks/bench_feel_fast.py [--steps 20] [--repeats 5] [--batch 1]

One character of the shipped portrait model (identity built as `charforge create` builds it: render,
invert `--steps` DDIM steps, masks). Interleaved, per state not drawn before: (a) the teacher's edit as
`Character.feel` draws it (replay of the inversion under Prompt-to-Prompt, edit strengths and the
masked local blend: `charforge.character.edits.edit_latents`) and (b) the student's edit
(`fast_edit_latents`: the base latent noised to the student's first step, 4 LCM steps of one UNet
pass per row, the same controls, the latent blend outside the face mask), each decoded and
composited; not stored. Costs are this process's CPU seconds (torch on one thread); the ratio is the
median of per-round ratios. `feel(..., fast=True)` is not offered: the student's edits miss the
emotion-edit targets (see charforge/models/portrait-mini-fast/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from charforge.character.edits import (  # noqa: E402
    FAST_STEPS,
    composite,
    decode_pictures,
    edit_latents,
    edit_mask,
    fast_edit_latents,
    student_of,
)
from charforge.character.identity import build_identity, character_model, load_identity  # noqa: E402
from charforge.emotion.conditioning import conditioning, expression_table  # noqa: E402
from charforge.forge import Forge  # noqa: E402

PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"
EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "disgust", "trust", "anticipation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="the identity's inversion steps (the teacher's edit)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="states drawn together in one edit call")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("CHARFORGE_TORCH_THREADS", "1")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = expression_table()
    with tempfile.TemporaryDirectory() as tmp, Forge.open(tmp, identity_builder=build_identity) as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=7, build_options={"steps": args.steps})
        teacher, student = character_model(mira), student_of(mira.model_ref)
        identity = load_identity(mira, teacher)
        cells = edit_mask(teacher, identity, table)

        def states(i: int) -> list:
            return [conditioning({EMOTIONS[(i * args.batch + k) % len(EMOTIONS)]: 0.5 + 0.04 * i}, PROMPT, table)
                    for k in range(args.batch)]  # fmt: skip

        def teacher_edit(i: int) -> None:
            latents = edit_latents(teacher, identity, states(i), table)
            composite(decode_pictures(teacher, latents[1:]), identity.base, cells)

        def student_edit(i: int) -> None:
            latents = fast_edit_latents(student, identity, states(i), table)
            composite(decode_pictures(student, latents[1:]), identity.base, cells)

        teacher_edit(-1), student_edit(-1)  # warm-up: first calls pay for allocations
        times: dict[str, list[float]] = {"teacher": [], "student": [], "ratio": []}
        for i in range(args.repeats):
            for name, run in (("teacher", teacher_edit), ("student", student_edit)):
                start = time.process_time()
                run(i)
                times[name].append(time.process_time() - start)
            times["ratio"].append(times["student"][-1] / times["teacher"][-1])
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{args.batch} state(s) per edit call, identity of {args.steps} steps, {args.threads} thread(s), "
              f"{args.repeats} repeats (medians of CPU time)")  # fmt: skip
        print(f"teacher edit ({args.steps} DDIM steps, replay) {med['teacher'] * 1000:8.1f} CPU ms")
        print(f"student edit ({FAST_STEPS} LCM steps)          {med['student'] * 1000:8.1f} CPU ms")
        print(f"student / teacher                  {med['ratio']:8.3f}")


if __name__ == "__main__":
    main()
