"""Quality of `Character.feel` on the default model: does the face show the emotion, does the rest stay?

    python benchmarks/eval_emotion_edits.py [--model DIR] [--characters 6] [--steps 20] [--sheet out.png]

Characters are the sample cast plus held-out renderer identities (combinations never seen in
training), each created the way `charforge create` does it (render, invert, attention masks). Every
character gets each basis emotion at two intensities plus two mixtures, all
rendered through the same functions `feel` uses. Per edit:

- PSNR outside the dilated face mask (the region the edit may change) against the base CG, both for
  the raw decoded edit and for the stored picture (which pastes the base's pixels there);
- face change: mean absolute difference inside that region, in 0-255 levels;
- whether the emotion judge (`charforge.recipes.portrait_mini.judge`) reads the requested dominant emotion.

It also reports how well the derived face mask matches the renderer's exact face mask, and, as the
ceiling an edit can hardly pass, how often the judge reads the emotion from a plain generation
of the target prompt (same seed, steps and guidance): an edit cannot show an expression the model
does not draw.
Targets (issue 6): PSNR >= 35 dB, dominant emotion recognised in >= 85% of at least 50 edits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from charforge.cards import load_cards  # noqa: E402
from charforge.character.edits import (  # noqa: E402
    composite,
    decode_pictures,
    edit_latents,
    edit_mask,
    fast_edit_latents,
    pixel_mask,
    student_of,
)
from charforge.character.identity import build_identity, character_model, load_identity  # noqa: E402
from charforge.demo import cast_dir  # noqa: E402
from charforge.emotion.conditioning import conditioning, expression_table  # noqa: E402
from charforge.engine import txt2img  # noqa: E402
from charforge.forge import Forge  # noqa: E402
from charforge.recipes.portrait_mini import population, render  # noqa: E402
from charforge.recipes.portrait_mini.dataset import image_to_tensor  # noqa: E402
from charforge.recipes.portrait_mini.judge import dominant, load_judge  # noqa: E402

EMOTIONS = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation")
MIXTURES = ((0.9, 0.3), (0.8, 0.4))  # (dominant, second) intensities; the second is the next emotion


def psnr_where(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64))[where] / 255.0
    mse = float((diff**2).mean()) if diff.size else 0.0
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def states() -> list[tuple[str, dict[str, float]]]:
    """(dominant emotion, state): each emotion alone at two intensities, and mixed with the next one."""
    out = [(name, {name: value}) for name in EMOTIONS for value in (0.6, 1.0)]
    for i, name in enumerate(EMOTIONS):
        first, second = MIXTURES[i % len(MIXTURES)]
        out.append((name, {name: first, EMOTIONS[(i + 1) % len(EMOTIONS)]: second}))
    return out


def prompts(count: int) -> list[tuple[str, str, int]]:
    """(name, prompt, seed): the sample cast first, then held-out renderer identities."""
    cast = [(card.name, card.prompt, card.resolved_seed()) for _, card in load_cards(cast_dir())]
    extra = [
        (f"held{k}", p.with_expression("neutral", 1.0).caption(), 100 + k)
        for k, p in enumerate(population.sample_portraits(2024, max(0, count - len(cast)), held_out=True))
    ]
    return (cast + extra)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped portrait-mini)")
    parser.add_argument("--characters", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("CHARFORGE_TORCH_THREADS", "1")))
    parser.add_argument("--fast", action="store_true", help="edits drawn by the few-step student")
    parser.add_argument("--fast-steps", type=int, default=4)
    parser.add_argument("--fast-strength", type=float, default=1.0)
    parser.add_argument("--sheet", default=None, help="also write a contact sheet of every edit to this PNG")
    parser.add_argument("--json", dest="json_out", action="store_true", help="print the summary as JSON only")
    parser.add_argument(
        "--expressions",
        default="{}",
        help="JSON overrides of expressions.toml, e.g. "
        '\'{"edit": {"cross_replace": 0.6}}\' (what a character\'s settings.expressions holds)',
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    judge = load_judge()
    overrides = json.loads(args.expressions)
    table = expression_table(overrides)
    wanted = states()
    rows: list[dict] = []
    sheet_rows = []
    mask_iou = []
    edit_seconds: list[float] = []
    student = student_of(args.model) if args.fast else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Forge.open(tmp, identity_builder=build_identity) as forge:
        for name, prompt, seed in prompts(args.characters):
            character = forge.create(
                name,
                prompt=prompt,
                seed=seed,
                model=args.model,
                build_options={"steps": args.steps},
                settings={"expressions": overrides},
            )
            model = character_model(character)
            identity = load_identity(character, model)
            cells = edit_mask(model, identity, table)
            if cells is None:
                raise SystemExit(f"{name}: no face mask was derived from attention; cannot evaluate")
            inside = pixel_mask(cells, identity.base.shape[:2]).numpy()
            truth = render.render(render.portrait_from_caption(prompt))[1]["face"]
            attention_face = identity.masks["face"].numpy()
            mask_iou.append((attention_face & truth).sum() / max(1, (attention_face | truth).sum()))
            conds = [conditioning(state, character.prompt, table) for _, state in wanted]
            raw, final = [], []
            for start in range(0, len(conds), 8):
                began = time.process_time()
                if args.fast:
                    latents = fast_edit_latents(student, identity, conds[start : start + 8], table,
                                                steps=args.fast_steps, strength=args.fast_strength)  # fmt: skip
                else:
                    latents = edit_latents(model, identity, conds[start : start + 8], table)
                edit_seconds.append(time.process_time() - began)
                pictures = decode_pictures(model, latents[1:])
                raw += pictures
                final += composite(pictures, identity.base, cells)
            inversion = identity.inversion
            plain = txt2img(
                model,
                [c.target_prompt for c in conds],
                negative=character.negative_prompt,
                seed=seed,
                steps=inversion.steps,
                guidance=inversion.guidance,
            ).images
            batch = torch.stack([image_to_tensor(p) for p in [identity.base, *final]])
            predicted = dominant(judge.intensities(batch))
            plain_read = dominant(judge.intensities(torch.stack([image_to_tensor(np.asarray(p)) for p in plain])))
            for (wanted_emotion, state), r, f, guess, plain_guess in zip(wanted, raw, final, predicted[1:], plain_read):
                rows.append({
                    "character": name, "state": state, "dominant": wanted_emotion, "predicted": guess,
                    "plain_predicted": plain_guess,
                    "psnr_outside_raw": psnr_where(r, identity.base, ~inside),
                    "psnr_outside": psnr_where(f, identity.base, ~inside),
                    "face_change": float(np.abs(f.astype(int) - identity.base.astype(int))[inside].mean()),
                    "base_predicted": predicted[0],
                })  # fmt: skip
            if args.sheet:
                import PIL.Image

                cells_ = [("base", PIL.Image.fromarray(identity.base))]
                cells_ += [(" ".join(f"{k[:4]}{v:g}" for k, v in s.items()), PIL.Image.fromarray(p))
                           for (_, s), p in zip(wanted, final)]  # fmt: skip
                sheet_rows.append((name, cells_))
    seconds = time.perf_counter() - started

    correct = [r["predicted"] == r["dominant"] for r in rows]
    per_emotion = defaultdict(list)
    for r, ok in zip(rows, correct):
        per_emotion[r["dominant"]].append(ok)
    raw_psnr = [r["psnr_outside_raw"] for r in rows]
    summary = {
        "edits": len(rows),
        "characters": len({r["character"] for r in rows}),
        "steps": args.steps,
        "expressions": overrides,
        "dominant_recognised": round(sum(correct) / len(rows), 3),
        "per_emotion": {k: round(sum(v) / len(v), 3) for k, v in per_emotion.items()},
        "plain_generation_recognised": round(statistics.mean(r["plain_predicted"] == r["dominant"] for r in rows), 3),
        "psnr_outside_face_db": {"min": min(r["psnr_outside"] for r in rows),
                                 "median": statistics.median(r["psnr_outside"] for r in rows)},
        "psnr_outside_face_raw_db": {"min": round(min(raw_psnr), 2), "median": round(statistics.median(raw_psnr), 2),
                                     "share_at_least_35": round(sum(p >= 35 for p in raw_psnr) / len(rows), 3)},
        "face_change_levels": {"min": round(min(r["face_change"] for r in rows), 2),
                               "median": round(statistics.median(r["face_change"] for r in rows), 2)},
        "base_read_as_neutral": round(statistics.mean(r["base_predicted"] == "neutral" for r in rows), 3),
        "face_mask_iou_vs_renderer": round(float(np.mean(mask_iou)), 3),
        "edit_cpu_seconds_per_call_of_8": round(statistics.median(edit_seconds), 3),
        "sampler": f"student, {args.fast_steps} LCM steps, strength {args.fast_strength}" if args.fast
        else f"teacher, {args.steps} DDIM steps (inversion replay)",
        "seconds_total": round(seconds, 1),
    }  # fmt: skip
    if args.sheet:
        from charforge.contact_sheet import contact_sheet

        contact_sheet(sheet_rows, cell=96).save(args.sheet)
    if args.json_out:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        print(f"{key:28s} {value}")
    confusion = defaultdict(int)
    for r in rows:
        if r["predicted"] != r["dominant"]:
            confusion[(r["dominant"], r["predicted"])] += 1
    if confusion:
        print("misread (asked -> read: count):", ", ".join(f"{a}->{b}: {n}" for (a, b), n in sorted(confusion.items())))


if __name__ == "__main__":
    main()
