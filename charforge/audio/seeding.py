"""Seed music: a short symbolic sketch of a mood, rendered to audio, for the BGM model to redraw.

Riffusion steers its model with seed spectrograms: img2img keeps the seed's time grid (onsets, so
tempo) and its strongest partials (so the key) while the prompt and the model supply timbre and
texture. A text-to-spectrogram model trained on a few thousand clips follows mood words but not a
tempo in digits, and its minor keys drift to the relative major; a seed fixes both without
retraining, for any spectrogram checkpoint (charforge's mini models or a Riffusion one alike).

The sketch is written so the key is unmistakable to any listener (textbook tonal writing, not one
estimator's profile): a cadence I-IV-V-I (i-iv-V-i with harmonic minor's major dominant, whose
leading tone the relative major lacks), the chord root in the bass, a tonic pedal in the middle
register, a melody on chord tones that steps from the leading tone to the tonic into every tonic
bar and ends each phrase on the tonic. The beat is the strongest periodicity: a kick and a chord
stab on every beat at exactly the plan's tempo, subdivisions only in the quieter melody. Valence
sets the mode and the brightness (melody register, partial tilt), arousal the tempo and the melody's
density, so nearby moods give nearby sketches and every mood its own. Notes sit mostly between
~250 Hz and 1.5 kHz, where a 64-bin mel image up to 3 kHz still resolves a semitone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charforge.errors import InvalidInput

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 11)}
# one chord a bar, semitones above the tonic: tonic, subdominant, dominant (always major), tonic
CADENCE = {"major": ((0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)),
           "minor": ((0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7))}
BEATS_PER_BAR = 4
#: Seed keys: tonics whose melody octave (MIDI 67-78) and chord bed fall where the mel image resolves
#: pitch best; the clip's seed picks one, so each seed is its own tune.
TONICS = tuple(range(12))


@dataclass(frozen=True)
class Sketch:
    """What one seed plays: key, tempo and the two continuous mood controls."""

    tonic: int
    mode: str
    bpm: float
    density: float  # 0..1: melody notes per beat 1 -> 2 (arousal)
    brightness: float  # 0..1: melody register and partial tilt (valence)

    def __post_init__(self) -> None:
        if self.mode not in SCALES:
            raise InvalidInput(f"mode must be 'major' or 'minor', got {self.mode!r}")
        if not 0 <= self.tonic < 12:
            raise InvalidInput(f"tonic must be a pitch class 0-11, got {self.tonic!r}")
        if not 20 <= self.bpm <= 300:
            raise InvalidInput(f"bpm must be in [20, 300], got {self.bpm!r}")
        if not (0 <= self.density <= 1 and 0 <= self.brightness <= 1):
            raise InvalidInput("density and brightness must be in [0, 1]")

    @property
    def loop_seconds(self) -> float:
        return len(CADENCE[self.mode]) * BEATS_PER_BAR * 60.0 / self.bpm


def sketch_for(mode: str, bpm: float, density: float, valence: float, seed: int) -> Sketch:
    """The seed sketch of a planned mood; the clip's seed picks the key."""
    tonic = int(np.random.default_rng([int(seed), 17]).choice(TONICS))
    return Sketch(tonic=tonic, mode=mode, bpm=float(bpm), density=float(density),
                  brightness=float(np.clip((valence + 1.0) / 2.0, 0.0, 1.0)))


def _place(pitch_class: int, low: int) -> int:
    """The MIDI note of `pitch_class` in [low, low + 12)."""
    return low + (pitch_class - low) % 12


def melody(sketch: Sketch, seed: int) -> list[tuple[float, int, bool]]:
    """(beat position, MIDI note, accented) of the melody over one loop of the cadence."""
    rng = np.random.default_rng([int(seed), 29])
    low = 76 + round(5 * sketch.brightness)
    scale = [m for m in range(low - 12, low + 24) if (m - sketch.tonic) % 12 in SCALES[sketch.mode]]
    scale = [m for m in scale if low <= m < low + 14]
    per_beat = 2 if sketch.density >= 0.5 else 1
    tonic_note = min((m for m in scale if (m - sketch.tonic) % 12 == 0), key=lambda m: abs(m - low - 5))
    notes: list[tuple[float, int, bool]] = []
    previous = tonic_note
    chords = CADENCE[sketch.mode]
    for bar, chord in enumerate(chords):
        tones = [m for m in scale if (m - sketch.tonic) % 12 in {c % 12 for c in chord}]
        for step in range(BEATS_PER_BAR * per_beat):
            beat = bar * BEATS_PER_BAR + step / per_beat
            on_beat = step % per_beat == 0
            if step == 0 and chord[0] == 0:
                note = tonic_note  # every tonic bar starts on the tonic
            elif bar == len(chords) - 2 and step == BEATS_PER_BAR * per_beat - 1:
                note = min((m for m in scale if (m - sketch.tonic) % 12 == 11), key=lambda m: abs(m - tonic_note))
            elif on_beat and chord[0] == 0:  # the tonic chord's third on its beats: the mode, sung
                note = min((m for m in tones if (m - sketch.tonic) % 12 == chord[1]), key=lambda m: abs(m - previous))
            elif on_beat:
                near = sorted(tones, key=lambda m: abs(m - previous))[:2]
                note = near[int(rng.integers(len(near)))]
            else:
                i = scale.index(min(scale, key=lambda m: abs(m - previous)))
                note = scale[int(np.clip(i + rng.choice([-1, 1]), 0, len(scale) - 1))]
            notes.append((beat, note, on_beat))
            previous = note
    notes[-1] = (notes[-1][0], tonic_note, notes[-1][2])  # the phrase ends home
    return notes


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _tone(midi: float, seconds: float, sr: int, tilt: float, decay: float) -> np.ndarray:
    """A few harmonics (amplitude 1/k^tilt) under an exponential decay, with a click-free attack and
    release. Five partials at most: the fifth harmonic of a tonic is its major third, which would
    blur a minor key."""
    n = max(int(seconds * sr), 2)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    y = np.zeros(n, dtype=np.float32)
    for k in range(1, 5):
        if k * _hz(midi) < sr / 2 - 500:
            y += np.float32(k**-tilt) * np.sin(np.float32(2 * np.pi * k * _hz(midi)) * t)
    y *= np.exp(-np.float32(decay) * t)
    edge = min(n // 2, int(0.004 * sr))
    y[:edge] *= np.linspace(0, 1, edge, dtype=np.float32)
    y[n - 4 * edge:] *= np.linspace(1, 0, 4 * edge, dtype=np.float32)
    return y


def _kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.18 * sr), dtype=np.float32) / np.float32(sr)
    sweep = 45.0 + 90.0 * np.exp(-t * 40.0)
    return (np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t * 22.0)).astype(np.float32)


def _add(buffer: np.ndarray, start: int, signal: np.ndarray, gain: float) -> None:
    """Mix `signal` in at `start`, wrapping past the end (the buffer is one seamless loop)."""
    index = (start + np.arange(signal.size)) % buffer.size
    np.add.at(buffer, index, gain * signal)


def render_sketch(sketch: Sketch, seed: int, sample_rate: int) -> np.ndarray:
    """One seamless loop of the sketch (float32, peak 0.9)."""
    if sample_rate < 8000:
        raise InvalidInput(f"sample rate must be at least 8000 Hz, got {sample_rate}")
    sr, beat = sample_rate, 60.0 / sketch.bpm
    buffer = np.zeros(int(round(sketch.loop_seconds * sr)), dtype=np.float32)
    at = lambda beats: int(round(beats * beat * sr))  # noqa: E731 - sample index of a beat position
    tilt = 2.2 - 1.0 * sketch.brightness
    tonic_pedal = _place(sketch.tonic, 60)
    kick = _kick(sr)
    for bar, chord in enumerate(CADENCE[sketch.mode]):
        # close position from C5, the third doubled an octave up: it is the note that tells the mode
        voicing = [_place(sketch.tonic + c, 72) for c in chord] + [_place(sketch.tonic + chord[1], 84)]
        root = _place(sketch.tonic + chord[0], 48)
        for b in range(BEATS_PER_BAR):
            first = bar * BEATS_PER_BAR + b
            _add(buffer, at(first), kick, 0.5)
            accent = 1.0 if b == 0 else 0.7
            for midi in voicing:  # a chord stab on every beat: harmony and pulse together
                _add(buffer, at(first), _tone(midi, 0.9 * beat, sr, tilt, 3.0), 0.11 * accent)
            if b % 2 == 0:
                _add(buffer, at(first), _tone(root, 1.8 * beat, sr, 1.5, 2.0), 0.12)
        _add(buffer, at(bar * BEATS_PER_BAR), _tone(tonic_pedal, BEATS_PER_BAR * beat, sr, 2.5, 0.6), 0.08)
    step = beat / (2 if sketch.density >= 0.5 else 1)
    for position, midi, accented in melody(sketch, seed):
        _add(buffer, at(position), _tone(midi, min(1.5 * step, 0.8), sr, tilt, 4.0), 0.2 if accented else 0.13)
    peak = float(np.abs(buffer).max())
    return buffer * np.float32(0.9 / peak) if peak > 0 else buffer


def sketch_audio(sketch: Sketch, seed: int, seconds: float, sample_rate: int) -> np.ndarray:
    """`seconds` of the looped sketch."""
    if not 0 < seconds <= 600:
        raise InvalidInput(f"seconds must be in (0, 600], got {seconds!r}")
    loop = render_sketch(sketch, seed, sample_rate)
    return np.take(loop, np.arange(int(round(seconds * sample_rate))), mode="wrap")
