"""Deterministic procedural music: the training set of charforge-mini-bgm and the test material.

Loops are built from chord progressions so that their key and tempo are known exactly, which is
what lets the model be measured: a clip that should be minor at 70 bpm can be checked with any key
profile and tempo tracker. Everything is additive synthesis in numpy driven by one seed, so a spec
always renders to the same samples.

The music is written so that the key is unmistakable to any listener, not only to one estimator:
- a tonal centre: progressions start on the tonic chord and cadence V-I (the dominant is always
  major: harmonic minor's leading tone, a note the relative major lacks), the bass plays chord roots
  with the tonic on every tonic chord, and the melody's strong beats sit on chord tones, resolving
  leading tone -> tonic into each tonic chord;
- no chord of the relative key (vi/iii in major, III/VII in minor), so a few seconds cut anywhere
  from a loop still measure in the labelled mode;
- several instruments in separate registers: bass (C2-B2), a sustained chord bed (G3-F#4), a lead
  melody (about F4-D6, higher and brighter as `brightness` rises) and drums whose hi-hats fill the
  top of the band;
- the beat is the strongest periodicity: the same kick on every beat, a light snare on 2 and 4,
  quieter subdivisions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from charforge.audio.theory import NOTE_NAMES, Mode
from charforge.errors import InvalidInput

Lead = Literal["pad", "pluck", "piano"]

MIN_BPM, MAX_BPM = 60.0, 180.0
PARTIAL_LIMIT_HZ = 9000.0

SCALES: dict[str, tuple[int, ...]] = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 11)}
# Chords as semitone offsets from the tonic (minor uses the harmonic minor's major V).
CHORDS: dict[str, tuple[int, ...]] = {
    "I": (0, 4, 7), "ii": (2, 5, 9), "IV": (5, 9, 12), "V": (7, 11, 14), "V7": (7, 11, 14, 17),
    "i": (0, 3, 7), "ii°": (2, 5, 8), "iv": (5, 8, 12), "VI": (8, 12, 15),
}
PROGRESSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "major": (("I", "IV", "V", "I"), ("I", "V", "IV", "V"), ("I", "IV", "I", "V7"), ("I", "IV", "V7", "I")),
    "minor": (("i", "iv", "V", "i"), ("i", "iv", "i", "V"), ("i", "i", "iv", "V"), ("i", "VI", "V", "i")),
}
BEATS_PER_BAR = 4


class MusicSpec(BaseModel):
    """Everything that determines one procedural loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tonic: int = Field(ge=0, le=11, description="pitch class of the key's tonic, 0 = C")
    mode: Mode
    bpm: float = Field(ge=MIN_BPM, le=MAX_BPM)
    lead: Lead = "piano"
    density: float = Field(0.5, ge=0, le=1, description="lead notes per beat: 1, 2 or 4")
    brightness: float = Field(0.5, ge=0, le=1, description="melody register and timbre brightness")
    loudness: float = Field(0.6, ge=0, le=1)
    bass: bool = True
    drums: bool = True
    progression: int = Field(0, ge=0)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _known_progression(self) -> MusicSpec:
        count = len(PROGRESSIONS[self.mode])
        if self.progression >= count:
            raise ValueError(f"progression must be < {count} for {self.mode} keys")
        return self

    @classmethod
    def checked(cls, **fields: object) -> MusicSpec:
        """Build a spec from user-facing values, turning a validation failure into one clear error."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "spec"
            raise InvalidInput(f"music {where}: {first['msg']}") from exc

    @property
    def key_name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def beats_per_chord(self) -> int:
        return 2 if self.bpm < 100 else 4

    @property
    def notes_per_beat(self) -> int:
        # Sixteenths only below 110 bpm: faster, they blur into a texture with no audible beat.
        if self.density < 1 / 3:
            return 1
        return 2 if self.density < 2 / 3 or self.bpm >= 110 else 4

    @property
    def loop_beats(self) -> int:
        return self.beats_per_chord * len(PROGRESSIONS[self.mode][self.progression])

    @property
    def loop_seconds(self) -> float:
        return self.loop_beats * 60.0 / self.bpm


def random_spec(rng: np.random.Generator, **fixed: object) -> MusicSpec:
    """Draw a spec uniformly over keys, modes, tempi, timbres and levels; `fixed` pins fields."""
    mode = fixed.get("mode", rng.choice(["major", "minor"]))
    values: dict[str, object] = {
        "tonic": int(rng.integers(12)),
        "mode": str(mode),
        "bpm": float(round(rng.uniform(MIN_BPM, MAX_BPM))),
        "lead": str(rng.choice(["pad", "pluck", "piano"])),
        "density": float(rng.uniform()),
        "brightness": float(rng.uniform()),
        "loudness": float(rng.uniform(0.3, 1.0)),
        "progression": int(rng.integers(len(PROGRESSIONS[str(mode)]))),
        "seed": int(rng.integers(2**31)),
    }
    values.update(fixed)
    return MusicSpec(**values)


# -- composition ------------------------------------------------------------------------------


def _place(pitch_class: int, low: int) -> int:
    """The MIDI note of `pitch_class` in the octave [low, low + 12)."""
    return low + (pitch_class - low) % 12


def _melody(spec: MusicSpec, chords: list[tuple[int, ...]], rng: np.random.Generator) -> list[int]:
    """One MIDI note per melody step: chord tones on beats, scale steps between, leading tone -> tonic
    into every tonic chord that follows a dominant, and the tonic on the loop's first note."""
    npb = spec.notes_per_beat
    steps_per_chord = spec.beats_per_chord * npb
    centre = 66 + round(12 * spec.brightness)
    scale = sorted(_place(spec.tonic + d, centre - 12) + 12 * k for d in SCALES[spec.mode] for k in range(3))
    scale = [m for m in scale if centre - 8 <= m <= centre + 8]
    names = PROGRESSIONS[spec.mode][spec.progression]
    notes: list[int] = []
    prev = _place(spec.tonic, centre - 6)
    for c, chord in enumerate(chords):
        tones = [m for m in scale if (m - spec.tonic - chord[0]) % 12 in {(o - chord[0]) % 12 for o in chord}]
        third = [m for m in tones if (m - spec.tonic - chord[1]) % 12 == 0]
        for s in range(steps_per_chord):
            if s == 0 and names[c] in ("I", "i"):
                note = min((m for m in scale if (m - spec.tonic) % 12 == 0), key=lambda m: abs(m - prev))
            elif s % npb == 0:
                pool = third if (s // npb) % 2 == 1 and third else tones
                near = sorted(pool, key=lambda m: abs(m - prev))[:2]
                note = near[int(rng.integers(len(near)))]
            else:
                i = scale.index(min(scale, key=lambda m: abs(m - prev)))
                i = int(np.clip(i + rng.choice([-1, 1]), 0, len(scale) - 1))
                note = scale[i]
            notes.append(note)
            prev = note
        following = names[(c + 1) % len(names)]
        if names[c].startswith("V") and following in ("I", "i"):  # the leading tone resolves up to the tonic
            notes[-1] = min((m for m in scale if (m - spec.tonic) % 12 == 11), key=lambda m: abs(m - prev))
    return notes


# -- synthesis --------------------------------------------------------------------------------


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _tone(
    freq: float, seconds: float, sr: int, amps: np.ndarray, decays: np.ndarray,
    attack: float, release: float, stretch: float = 0.0,
) -> np.ndarray:
    """Additive note: partial k has amplitude amps[k] * exp(-decays[k] t); partials above
    PARTIAL_LIMIT_HZ are dropped so nothing aliases. float32 throughout: rendering the training set
    is dominated by these sines, and float32 phase error stays below 0.01 rad."""
    n = max(int(seconds * sr), 1)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    k = np.arange(1, len(amps) + 1, dtype=np.float64)
    partial_hz = k * freq * np.sqrt(1.0 + stretch * k * k)
    keep = partial_hz < min(PARTIAL_LIMIT_HZ, sr / 2 - 500)
    omega = (2 * np.pi * partial_hz[keep]).astype(np.float32)[:, None]
    env = amps[keep].astype(np.float32)[:, None] * np.exp(-decays[keep].astype(np.float32)[:, None] * t[None, :])
    y = np.einsum("kn,kn->n", env, np.sin(omega * t[None, :]))
    a = min(max(int(attack * sr), 1), n)
    r = min(max(int(release * sr), 1), n)
    y[:a] *= np.linspace(0.0, 1.0, a, endpoint=False, dtype=np.float32)
    y[n - r:] *= np.linspace(1.0, 0.0, r, dtype=np.float32)
    return y


def _tilt(count: int, slope: float) -> np.ndarray:
    return 1.0 / np.arange(1, count + 1) ** slope


def _pad(freq: float, seconds: float, sr: int, bright: float) -> np.ndarray:
    amps, decays = _tilt(8, 2.2 - 0.8 * bright), np.full(8, 0.15)
    attack = min(0.3 * seconds, 0.25)
    detuned = _tone(freq * 2 ** (5 / 1200), seconds, sr, amps, decays, attack, 0.2)
    return 0.5 * (_tone(freq, seconds, sr, amps, decays, attack, 0.2) + detuned)


def _pluck(freq: float, seconds: float, sr: int, bright: float) -> np.ndarray:
    k = np.arange(1, 13)
    return _tone(freq, seconds, sr, _tilt(12, 1.8 - 0.7 * bright), 4.0 + 2.5 * k, 0.003, 0.05)


def _piano(freq: float, seconds: float, sr: int, bright: float) -> np.ndarray:
    k = np.arange(1, 13)
    return _tone(freq, seconds, sr, _tilt(12, 2.0 - 0.7 * bright), 1.0 + 0.6 * k, 0.004, 0.08, stretch=0.0004)


def _keys(freq: float, seconds: float, sr: int, bright: float) -> np.ndarray:
    """Soft electric-piano comp under a pad lead."""
    return _tone(freq, seconds, sr, np.array([1.0, 0.2, 0.25, 0.05, 0.08]), np.full(5, 2.0), 0.005, 0.1)


def _bass(freq: float, seconds: float, sr: int) -> np.ndarray:
    return _tone(freq, seconds, sr, np.array([1.0, 0.5, 0.2, 0.1]), np.full(4, 2.0), 0.005, 0.05)


_VOICES = {"pad": _pad, "pluck": _pluck, "piano": _piano}


def _kick(sr: int, tonic: int) -> np.ndarray:
    """A pitch-swept kick that settles on the tonic (E1..Eb2), as producers tune an 808 to the key."""
    t = np.arange(int(0.3 * sr)) / sr
    sweep = _hz(_place(tonic, 28)) + 75.0 * np.exp(-t * 30.0)
    return np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t * 14.0)


def _hat(sr: int, seconds: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = rng.standard_normal(t.size)
    bright = np.diff(np.diff(noise, prepend=0.0), prepend=0.0)  # second difference: a cheap high-pass
    return bright * np.exp(-t * decay) * 0.25


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.2 * sr)) / sr
    return np.diff(rng.standard_normal(t.size), prepend=0.0) * np.exp(-t * 25.0) * 0.6


def _mix_into(buffer: np.ndarray, start: int, signal: np.ndarray, gain: float) -> None:
    """Add `signal` at `start`, wrapping past the end so the buffer is a seamless loop."""
    n = buffer.size
    pos, done = start % n, 0
    while done < signal.size:
        take = min(n - pos, signal.size - done)
        buffer[pos : pos + take] += gain * signal[done : done + take]
        done += take
        pos = 0


def render_loop(spec: MusicSpec, sample_rate: int = 22050) -> np.ndarray:
    """One seamless loop of the spec (note tails wrap around to the start), peak = level."""
    if sample_rate < 8000:
        raise InvalidInput(f"sample rate must be at least 8000 Hz, got {sample_rate}")
    rng = np.random.default_rng(spec.seed)
    sr, bright = sample_rate, spec.brightness
    beat = 60.0 / spec.bpm
    buffer = np.zeros(int(round(spec.loop_seconds * sr)), dtype=np.float64)
    at = lambda beats: int(round(beats * beat * sr))  # noqa: E731 - sample index of a beat position

    chords = [CHORDS[name] for name in PROGRESSIONS[spec.mode][spec.progression]]
    chord_seconds = spec.beats_per_chord * beat
    bed = _keys if spec.lead == "pad" else _pad
    for index, chord in enumerate(chords):
        first = index * spec.beats_per_chord
        # close position in G3..F#4, the third doubled an octave up: it is the note that tells the mode
        voicing = [_place(spec.tonic + o, 55) for o in chord] + [_place(spec.tonic + chord[1], 67)]
        if bed is _pad:
            for midi in voicing:
                _mix_into(buffer, at(first), _pad(_hz(midi), chord_seconds + 0.1, sr, bright), 0.09)
        else:  # keys comp: chord struck on each beat
            for b in range(spec.beats_per_chord):
                for midi in voicing:
                    _mix_into(buffer, at(first + b), _keys(_hz(midi), beat * 0.95, sr, bright), 0.07)
        if spec.bass:  # the chord's root, so tonic chords put the tonic in the bass
            root = _place(spec.tonic + chord[0], 36)
            hits = range(spec.beats_per_chord) if spec.density >= 0.5 else range(0, spec.beats_per_chord, 2)
            span = beat * (0.9 if spec.density >= 0.5 else 1.8)
            for b in hits:
                _mix_into(buffer, at(first + b), _bass(_hz(root), span, sr), 0.32 if b == 0 else 0.24)

    step = 1.0 / spec.notes_per_beat
    voice, length = _VOICES[spec.lead], {"pad": 0.9, "pluck": 0.5, "piano": 1.0}[spec.lead]
    for s, midi in enumerate(_melody(spec, chords, rng)):
        on_beat = s % spec.notes_per_beat == 0
        velocity = (1.0 if on_beat else 0.55) * rng.uniform(0.9, 1.0)
        seconds = min(length, 1.5 * step * beat + 0.05) if spec.lead != "pad" else step * beat + 0.1
        _mix_into(buffer, at(s * step), voice(_hz(midi), seconds, sr, bright), 0.3 * velocity)

    if spec.drums:
        kick, snare = _kick(sr, spec.tonic), _snare(sr, rng)
        for b in range(spec.loop_beats):
            _mix_into(buffer, at(b), kick, 0.7)  # every beat alike: the beat, not the half bar, is the pulse
            if spec.density >= 0.3 and b % 2 == 1:
                _mix_into(buffer, at(b), snare, 0.15)
            hats = max(spec.notes_per_beat, 2)
            for h in range(hats):
                _mix_into(buffer, at(b + h / hats), _hat(sr, 0.05, 70.0, rng), 0.12 if h == 0 else 0.07)

    level = 0.15 + 0.75 * spec.loudness
    peak = float(np.max(np.abs(buffer)))
    return (buffer * (level / peak)).astype(np.float32) if peak > 0 else buffer.astype(np.float32)


def render(spec: MusicSpec, seconds: float, sample_rate: int = 22050, offset: float = 0.0) -> np.ndarray:
    """`seconds` of the looped spec starting `offset` seconds into the loop."""
    if not 0 < seconds <= 600:
        raise InvalidInput(f"seconds must be in (0, 600], got {seconds}")
    loop = render_loop(spec, sample_rate)
    n = int(round(seconds * sample_rate))
    start = int(round(offset * sample_rate)) % loop.size
    return np.take(loop, np.arange(start, start + n), mode="wrap")
