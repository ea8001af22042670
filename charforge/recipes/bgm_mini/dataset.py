"""Procedural music as a training source: spectrogram images with mood captions.

Each sample is drawn from a point in valence/arousal space, the same space emotions are mapped to:
valence decides the mode (major when positive) and the brightness, arousal decides tempo, note
density and loudness. Captions are made by the runtime's own mood table (`charforge.audio.mood`,
`moods.toml`): band words plus the tempo in `bpm_step` buckets ("upbeat sad piano loop, 150 bpm"),
so a prompt built from an emotion later uses exactly the vocabulary the model was trained on. A
share of captions carries no tempo, so the mood words alone also steer.

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

from charforge.audio.codec import SpectrogramCodec
from charforge.audio.mood import arousal_bpm, mood_table, prompt_for
from charforge.errors import InvalidInput
from charforge.files import atomic_write
from charforge.recipes.bgm_mini import music

log = logging.getLogger(__name__)

LEADS: tuple[music.Lead, ...] = ("pad", "pluck", "piano")
# Five keys rather than twelve: a model trained for an hour on CPU learns a few chord shapes
# well rather than many badly; each key exists in both modes, so mode is never confounded with key.
TONICS = (0, 2, 5, 7, 9)  # C, D, F, G, A
WINDOWS_PER_LOOP = 3
MIN_VALENCE = 0.1  # |valence| below this has no clear mode, so none is drawn for training
TEMPO_CAPTION_SHARE = 0.85  # the rest name the mood alone, so words without a tempo still work


def _checked_point(valence: float, arousal: float) -> None:
    for name, v in (("valence", valence), ("arousal", arousal)):
        if not -1.0 <= v <= 1.0:
            raise InvalidInput(f"{name} must be in [-1, 1], got {v}")


def mood_words(valence: float, arousal: float) -> tuple[str, str]:
    """(arousal word, valence word) of the shared mood table for a point of the valence/arousal square."""
    _checked_point(valence, arousal)
    table = mood_table()
    return table.arousal.words[table.arousal.index(arousal)], table.valence.words[table.valence.index(valence)]


def mood_prompt(valence: float, arousal: float, lead: str = "piano") -> str:
    """The prompt for music of a given valence and arousal: the mood table's template at its tempo."""
    if lead not in LEADS:
        raise InvalidInput(f"unknown lead {lead!r}; choose one of {', '.join(LEADS)}")
    _checked_point(valence, arousal)
    return prompt_for(valence, arousal, arousal_bpm(arousal), lead)


@dataclass(frozen=True)
class BGMSample:
    """What one training loop is: the mood point it was drawn from, its music, and its caption."""

    valence: float
    arousal: float
    spec: music.MusicSpec
    caption: str


def draw_sample(seed: int, loop_index: int) -> BGMSample:
    """The loop_index-th training loop of a seed (independent of every other index).

    Valence sets the mode by its sign and the brightness (melody register, timbre) continuously;
    arousal sets tempo, density and loudness continuously. The caption names the tempo bucket of the
    tempo actually rendered, so "150 bpm" in a prompt means what it meant in training.
    """
    rng = np.random.default_rng([seed, loop_index])
    valence = float(rng.uniform(MIN_VALENCE, 1.0) * rng.choice([-1.0, 1.0]))
    arousal = float(rng.uniform(-1.0, 1.0))
    level = (arousal + 1.0) / 2.0
    mode = "major" if valence > 0 else "minor"
    spec = music.MusicSpec(
        tonic=int(rng.choice(TONICS)),
        mode=mode,
        bpm=float(np.clip(round(arousal_bpm(arousal) + rng.normal(0.0, 3.0)), *mood_table().arousal.bpm)),
        lead=str(rng.choice(LEADS)),
        density=float(np.clip(level + rng.normal(0.0, 0.1), 0.0, 1.0)),
        brightness=float(np.clip((valence + 1.0) / 2.0 + rng.normal(0.0, 0.05), 0.0, 1.0)),
        loudness=float(np.clip(0.3 + 0.6 * level + rng.normal(0.0, 0.08), 0.0, 1.0)),
        progression=int(rng.integers(len(music.PROGRESSIONS[mode]))),
        seed=int(rng.integers(2**31)),
    )
    text = prompt_for(valence, arousal, spec.bpm, spec.lead)
    if rng.uniform() >= TEMPO_CAPTION_SHARE:
        text = text.split(",")[0]
    return BGMSample(valence, arousal, spec, text)


def caption_words() -> list[str]:
    """Every word a BGM caption can contain (the tokenizer learns each as one token).

    CLIP's pre-tokenizer splits numbers into single digits, so tempi are spelt with the ten digits.
    """
    table = mood_table()
    words = set(table.valence.words) | set(table.arousal.words) | set(LEADS)
    words |= {"loop", "bpm", ","} | {str(d) for d in range(10)}
    return sorted(words)


class BGMSource:
    """`source[i]` -> (3 x n_mels x width tensor in [-1, 1], caption) under a codec preset.

    Three identical channels, because the engine (like riffusion) treats spectrograms as RGB
    pictures. Pixels are rendered on first use and kept (32 KB each under `full`); `prerender()` renders all of
    them up front so a training budget is not spent on synthesis.
    """

    def __init__(self, seed: int, count: int, preset: str = "full") -> None:
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
        synthesis code (a hash of music.py and this file, so a changed instrument or caption never trains
        on stale pixels).
        """
        synth = hashlib.sha256(Path(music.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()
        stamp = {"seed": self.seed, "count": self.count, "preset": self.codec.preset.model_dump(), "music": synth,
                 "moods": mood_table().model_dump()}
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
