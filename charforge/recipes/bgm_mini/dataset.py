"""Procedural music as a training source: `mini` spectrogram images with mood captions.

Each sample is drawn from a point in valence/arousal space, the same space emotions are mapped to:
valence decides the mode (major when positive), arousal decides tempo, note density and loudness.
Captions name that point in words ("energetic sad piano loop"), so a prompt built from an emotion
later (`mood_prompt`) uses exactly the vocabulary the model was trained on. The key and tempo are
appended only to some captions, so the mood words alone must carry mode and tempo.

Sources are indexed, like every training source: sample i is a pure function of (seed, i).
Several windows are cut from each rendered loop at random offsets, which is cheap augmentation
(the same harmony and tempo seen at different phases of the bar).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from charforge.recipes.bgm_mini import music
from charforge.audio.codec import SpectrogramCodec
from charforge.errors import InvalidInput
from charforge.files import atomic_write

log = logging.getLogger(__name__)

# Words for quarters of [-1, 1]; the sign of valence is the mode, so its two halves never mix.
VALENCE_WORDS = ("sad", "melancholic", "hopeful", "happy")
AROUSAL_WORDS = ("calm", "relaxed", "upbeat", "energetic")
LEADS: tuple[music.Lead, ...] = ("pad", "pluck", "piano")
# Five keys rather than twelve: a model trained for half an hour on CPU learns a few chord shapes
# well rather than many badly; each key exists in both modes, so mode is never confounded with key.
TONICS = (0, 2, 5, 7, 9)  # C, D, F, G, A
WINDOWS_PER_LOOP = 3
MIN_VALENCE = 0.1  # |valence| below this has no clear mode, so none is drawn for training


def _quarter(value: float) -> int:
    return min(int((value + 1.0) * 2.0), 3)


def mood_words(valence: float, arousal: float) -> tuple[str, str]:
    """(arousal word, valence word) for a point of the valence/arousal square."""
    for name, v in (("valence", valence), ("arousal", arousal)):
        if not -1.0 <= v <= 1.0:
            raise InvalidInput(f"{name} must be in [-1, 1], got {v}")
    return AROUSAL_WORDS[_quarter(arousal)], VALENCE_WORDS[_quarter(valence)]


def mood_prompt(valence: float, arousal: float, lead: str = "piano") -> str:
    """The prompt, in training-caption vocabulary, for music of a given valence and arousal."""
    if lead not in LEADS:
        raise InvalidInput(f"unknown lead {lead!r}; choose one of {', '.join(LEADS)}")
    energy, mood = mood_words(valence, arousal)
    return f"{energy} {mood} {lead} loop"


def arousal_bpm(arousal: float) -> float:
    """Centre tempo of an arousal level: 60 bpm at -1, 180 bpm at +1."""
    return music.MIN_BPM + (music.MAX_BPM - music.MIN_BPM) * (arousal + 1.0) / 2.0


@dataclass(frozen=True)
class BGMSample:
    """What one training loop is: the mood point it was drawn from, its music, and its caption."""

    valence: float
    arousal: float
    spec: music.MusicSpec
    caption: str


def draw_sample(seed: int, loop_index: int) -> BGMSample:
    """The loop_index-th training loop of a seed (independent of every other index)."""
    rng = np.random.default_rng([seed, loop_index])
    valence = float(rng.uniform(MIN_VALENCE, 1.0) * rng.choice([-1.0, 1.0]))
    arousal = float(rng.uniform(-1.0, 1.0))
    level = (arousal + 1.0) / 2.0
    mode = "major" if valence > 0 else "minor"
    spec = music.MusicSpec(
        tonic=int(rng.choice(TONICS)),
        mode=mode,
        bpm=float(np.clip(round(arousal_bpm(arousal) + rng.normal(0.0, 6.0)), music.MIN_BPM, music.MAX_BPM)),
        lead=str(rng.choice(LEADS)),
        density=float(np.clip(level + rng.normal(0.0, 0.15), 0.0, 1.0)),
        loudness=float(np.clip(0.3 + 0.6 * level + rng.normal(0.0, 0.08), 0.0, 1.0)),
        progression=int(rng.integers(len(music.PROGRESSIONS[mode]))),
        seed=int(rng.integers(2**31)),
    )
    parts = [mood_prompt(valence, arousal, spec.lead)]
    if rng.uniform() < 0.5:
        parts.append(spec.key_name)
    if rng.uniform() < 0.5:
        parts.append(f"{round(spec.bpm)} bpm")
    return BGMSample(valence, arousal, spec, ", ".join(parts))


def caption_words() -> list[str]:
    """Every word a BGM caption can contain (the tokenizer learns each as one token).

    CLIP's pre-tokenizer splits numbers into single digits, so tempi are spelt with the ten digits.
    """
    words = set(VALENCE_WORDS) | set(AROUSAL_WORDS) | set(LEADS)
    words |= {music.NOTE_NAMES[t].lower() for t in TONICS}
    words |= {"loop", "major", "minor", "bpm", ","} | {str(d) for d in range(10)}
    return sorted(words)


class BGMSource:
    """`source[i]` -> (3 x n_mels x width tensor in [-1, 1], caption) under the `mini` preset.

    Three identical channels, because the engine (like riffusion) treats spectrograms as RGB
    pictures. Pixels are rendered on first use and kept (16 KB each); `prerender()` renders all of
    them up front so a training budget is not spent on synthesis.
    """

    def __init__(self, seed: int, count: int, preset: str = "mini") -> None:
        if count <= 0:
            raise InvalidInput(f"a BGM source needs at least one sample, got {count}")
        self.seed, self.count = seed, count
        self.codec = SpectrogramCodec(preset)
        p = self.codec.preset
        self._pixels = np.zeros((count, p.n_mels, p.width), dtype=np.uint8)
        self._done = np.zeros(count, dtype=bool)

    def __len__(self) -> int:
        return self.count

    def sample(self, index: int) -> BGMSample:
        return draw_sample(self.seed, index // WINDOWS_PER_LOOP)

    def caption(self, index: int) -> str:
        return self.sample(index).caption

    def _render_loop(self, loop_index: int) -> None:
        p = self.codec.preset
        drawn = draw_sample(self.seed, loop_index)
        loop = music.render_loop(drawn.spec, p.sample_rate)
        rng = np.random.default_rng([self.seed, loop_index, 1])
        first = loop_index * WINDOWS_PER_LOOP
        for index in range(first, min(first + WINDOWS_PER_LOOP, self.count)):
            start = int(rng.integers(loop.size))
            window = np.take(loop, np.arange(start, start + p.samples_per_image), mode="wrap")
            self._pixels[index] = np.asarray(self.codec.audio_to_image(window))
            self._done[index] = True

    def image(self, index: int) -> np.ndarray:
        """The greyscale spectrogram image (n_mels x width, uint8) of sample `index`."""
        if not 0 <= index < self.count:
            raise IndexError(index)
        if not self._done[index]:
            self._render_loop(index // WINDOWS_PER_LOOP)
        return self._pixels[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        grey = torch.from_numpy(self.image(index).astype(np.float32) / 127.5 - 1.0)
        return grey.expand(3, -1, -1).clone(), self.caption(index)

    def prerender(self, cache: str | Path | None = None) -> None:
        """Render every sample now; with `cache`, reuse (or write) a .npy of all the pixels.

        The cache is only trusted when its JSON sidecar names the same seed, count, preset and
        synthesis code (a hash of music.py, so a changed instrument never trains on stale pixels).
        """
        synth = hashlib.sha256(Path(music.__file__).read_bytes()).hexdigest()
        stamp = {"seed": self.seed, "count": self.count, "preset": self.codec.preset.model_dump(), "music": synth}
        path = Path(cache) if cache is not None else None
        sidecar = path.with_suffix(".json") if path is not None else None
        if path is not None and path.is_file() and sidecar.is_file():
            if json.loads(sidecar.read_text(encoding="utf-8")) == stamp:
                pixels = np.load(path, allow_pickle=False)
                if pixels.shape == self._pixels.shape and pixels.dtype == np.uint8:
                    self._pixels[:] = pixels
                    self._done[:] = True
                    log.info("loaded %d BGM spectrograms from %s", self.count, path)
                    return
        loops = range(0, (self.count + WINDOWS_PER_LOOP - 1) // WINDOWS_PER_LOOP)
        todo = [j for j in loops if not self._done[j * WINDOWS_PER_LOOP]]
        for j in tqdm(todo, desc="render BGM loops", mininterval=5.0):
            self._render_loop(j)
        log.info("rendered %d BGM loops into %d spectrogram images", len(todo), self.count)
        if path is not None:
            atomic_write(path, lambda handle: np.save(handle, self._pixels, allow_pickle=False))
            atomic_write(sidecar, json.dumps(stamp).encode("utf-8"))
