"""Quality of the shipped portrait-mini model, with and without classifier-free guidance, in one run.

    HF_HUB_OFFLINE=1 python benchmarks/eval_portrait_mini.py [--samples 200] [--model DIR]

Prints the issue's figures (hair-colour and expression accuracy on held-out prompts, CFG 5, 25 DDIM
steps; VAE PSNR) and, side by side, the same with guidance 1 (no CFG), with the time ratio: what the
unconditional branch costs and buys.
"""

from __future__ import annotations

import argparse
import json

import torch

from charforge.recipes.portrait_mini.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    guided = evaluate(args.model, samples=args.samples, steps=args.steps, guidance=5.0)
    plain = evaluate(args.model, samples=args.samples, steps=args.steps, guidance=1.0)
    print(json.dumps({"cfg5": guided, "cfg1": plain}, indent=2))
    print(f"hair colour accuracy  CFG5 {guided['hair_colour_accuracy']:.3f}  CFG1 {plain['hair_colour_accuracy']:.3f}")
    print(f"expression accuracy   CFG5 {guided['expression_accuracy']:.3f}  CFG1 {plain['expression_accuracy']:.3f}")
    print(f"VAE PSNR on held-out renders: {guided['vae_psnr_db']:.2f} dB")
    ratio = guided["seconds_per_sample"] / max(plain["seconds_per_sample"], 1e-9)
    print(f"time per sample CFG5/CFG1: {ratio:.2f}x")


if __name__ == "__main__":
    main()
