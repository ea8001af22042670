"""How good are expression edits on the shipped mini model: does the face change, does the rest stay?

Held-out renderer portraits (identities never seen in training) are inverted once (direct inversion)
and redrawn with another expression under several controller settings. The shipped attribute
classifier judges each result: expression accuracy (did the edit take), attribute retention (hair,
outfit, background, accessory unchanged) and PSNR outside the renderer's exact face mask against the
input (did the rest stay). One run prints one row per setting, so defaults are chosen on evidence.

    python benchmarks/eval_edits.py [--count 12] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import torch  # noqa: E402

from charforge.engine import default_model_path, load_model, txt2img  # noqa: E402
from charforge.engine.edit import edit, prompt_edit_controllers  # noqa: E402
from charforge.engine.images import psnr  # noqa: E402
from charforge.engine.inversion import invert  # noqa: E402
from charforge.recipes.portrait_mini import population, render  # noqa: E402
from charforge.recipes.portrait_mini.classifier import load_classifier  # noqa: E402

TARGETS = ("joy", "sadness", "anger", "surprise")
KEPT = ("hair_colour", "hair_style", "outfit", "background", "accessory")
SETTINGS = {
    "no control": dict(none=True),
    "replace .6/.4": dict(cross_replace_steps=0.6, self_replace_steps=0.4),
    "replace .6/.4 + blend": dict(cross_replace_steps=0.6, self_replace_steps=0.4, blend=True),
    "replace .8/.4 + blend": dict(cross_replace_steps=0.8, self_replace_steps=0.4, blend=True),
    "replace .6/.4 + reweight 2": dict(cross_replace_steps=0.6, self_replace_steps=0.4, reweight=2.0),
    "offsets on target, .6/.4": dict(cross_replace_steps=0.6, self_replace_steps=0.4, offset_targets=True),
    "offsets on target, .6/.4 + blend": dict(
        cross_replace_steps=0.6, self_replace_steps=0.4, blend=True, offset_targets=True
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blend-threshold", type=float, default=0.7, help="the mini model's maps are flat: 0.7")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(default_model_path(), device="cpu", dtype=torch.float32)
    judge = load_classifier()
    cast = population.sample_portraits(2024, args.count, held_out=True)
    portraits = [p.with_expression("neutral", 1.0) for p in cast]

    rows: dict[str, dict[str, list[float]]] = {name: {"expr": [], "kept": [], "psnr": []} for name in SETTINGS}
    with torch.no_grad():
        generated = [judge.predict(txt2img(model, p.with_expression(TARGETS[k % len(TARGETS)], 1.0).caption(), seed=k,
                                           steps=args.steps, guidance=args.guidance).pixels * 2 - 1)["expression"][0]
                     for k, p in enumerate(portraits)]  # fmt: skip
    txt2img_acc = np.mean([g == TARGETS[k % len(TARGETS)] for k, g in enumerate(generated)])
    for k, portrait in enumerate(portraits):
        pixels, masks = render.render(portrait)
        image = PIL.Image.fromarray(pixels)
        goal = portrait.with_expression(TARGETS[k % len(TARGETS)], 1.0)
        source, target = portrait.caption(), goal.caption()
        inversion = invert(model, image, source, "direct", steps=args.steps, guidance=args.guidance)
        outside = torch.from_numpy(~masks["face"])
        truth = torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255
        for name, setting in SETTINGS.items():
            if setting.get("none"):
                controllers = []
            else:
                new_words = render.EXPRESSIONS[goal.expression].split()
                words = new_words + render.EXPRESSIONS["neutral"].split()
                reweight = {w: setting["reweight"] for w in new_words} if "reweight" in setting else None
                controllers = prompt_edit_controllers(
                    model.tokenizer, source, target, steps=args.steps,
                    blend_words=words if setting.get("blend") else (),
                    reweight=reweight, blend_threshold=args.blend_threshold,
                    cross_replace_steps=setting["cross_replace_steps"],
                    self_replace_steps=setting["self_replace_steps"],
                )  # fmt: skip
            result = edit(model, inversion, target, controllers, offset_targets=setting.get("offset_targets", False))
            out = result.pixels[0]
            with torch.no_grad():
                verdict = judge.predict(out[None] * 2 - 1)
            rows[name]["expr"].append(float(verdict["expression"][0] == goal.expression))
            rows[name]["kept"].append(float(np.mean([verdict[a][0] == getattr(portrait, a) for a in KEPT])))
            rows[name]["psnr"].append(psnr(out[:, outside], truth[:, outside]))
    print(
        f"{args.count} held-out portraits, neutral -> {'/'.join(TARGETS)}, {args.steps} steps, guidance {args.guidance}"
    )
    print(
        f"(txt2img of the target prompts shows the asked expression {txt2img_acc:.2f} of the time: the model's ceiling)"
    )
    print(f"{'setting':<34}{'expression':>11}{'attributes':>11}{'PSNR off-face':>15}")
    for name, row in rows.items():
        print(
            f"{name:<34}{statistics.mean(row['expr']):>11.2f}{statistics.mean(row['kept']):>11.2f}"
            f"{statistics.mean(row['psnr']):>15.2f}"
        )


if __name__ == "__main__":
    main()
