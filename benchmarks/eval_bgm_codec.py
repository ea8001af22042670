"""How often procedural clips measure as labelled, raw and after a `mini` codec round trip.

    python benchmarks/eval_bgm_codec.py [--clips 40] [--source random|dataset]

`random` draws clips uniformly over keys, modes, tempi, timbres and densities (music.random_spec);
`dataset` draws them as the BGM training set does (bgm_dataset.draw_sample). Each clip is one
`mini` tile cut at a random point of its loop. Prints the share whose estimated mode equals the
label and whose estimated tempo is within 6% of the label, for the raw audio and for audio ->
image -> audio; these bound what a BGM model trained on such images can be measured to do.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm.auto import tqdm

from charforge.audio import analysis
from charforge.audio.codec import SpectrogramCodec
from charforge.recipes.bgm_mini import music
from charforge.recipes.bgm_mini.dataset import draw_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--source", choices=["random", "dataset"], default="random")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    codec = SpectrogramCodec("mini")
    p = codec.preset
    rng = np.random.default_rng(args.seed)
    hits = {"raw mode": 0, "raw tempo": 0, "round-trip mode": 0, "round-trip tempo": 0}
    for i in tqdm(range(args.clips), desc="clips"):
        spec = music.random_spec(rng) if args.source == "random" else draw_sample(args.seed, i).spec
        y = music.render(spec, p.seconds_per_image, p.sample_rate, offset=float(rng.uniform(0, spec.loop_seconds)))
        back = codec.image_to_audio(codec.audio_to_image(y), seed=i)
        for label, audio in (("raw", y), ("round-trip", back)):
            hits[f"{label} mode"] += analysis.estimate_key(audio, p.sample_rate).mode == spec.mode
            hits[f"{label} tempo"] += abs(analysis.estimate_tempo(audio, p.sample_rate) - spec.bpm) <= 0.06 * spec.bpm
    print(f"{args.clips} {args.source} clips, one {p.seconds_per_image:.2f} s mini tile each")
    for name, count in hits.items():
        print(f"  {name:17s} {count:3d}/{args.clips} = {count / args.clips:.1%}")


if __name__ == "__main__":
    main()
