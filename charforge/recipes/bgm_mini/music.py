"""Deterministic procedural music: the training set of charforge-mini-bgm and the test material.

Loops are built from chord progressions so that their key and tempo are known exactly, which is
what lets the model (and the codec) be measured: a clip that should be minor at 70 bpm can be
checked with a key profile and a tempo estimator. Everything is additive synthesis in numpy driven
by one seed, so a spec always renders to the same samples.

Musical choices that make the labels measurable rather than merely nominal:
- progressions start on and return to the tonic, and every chord holds a note that the other mode
  of the same tonic lacks (major: 3, 6 or 7; natural minor: b3, b6 or b7), while the chords that
  would suggest the relative key (vi and iii in major, III and VII in minor) are left out. A few
  seconds cut anywhere from a loop then still measure as the labelled mode;
- the harmonic rhythm is two beats per chord below 100 bpm, so a few seconds always hold several
  chords whatever the tempo;
- chords sit between F#4 and ~2 kHz, where the `mini` codec's 64 mel bins are about a semitone
  wide (an octave lower they are three semitones wide and minor thirds come back major), with the
  third voiced on top and on accented beats;
- the bass is quiet and the drums unpitched enough that harmony, not rhythm section, fills the
  chroma;
- every beat carries a kick, a bass note and an accented lead note, so the beat, not its
  subdivision or the bar, is the strongest periodicity.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from charforge.audio.theory import NOTE_NAMES, Mode
from charforge.errors import InvalidInput

Lead = Literal["pad", "pluck", "piano"]

MIN_BPM, MAX_BPM = 60.0, 180.0

# Chords as semitone offsets from the tonic.
CHORDS: dict[str, tuple[int, int, int]] = {
    "I": (0, 4, 7), "ii": (2, 5, 9), "IV": (5, 9, 12), "V": (7, 11, 14),
    "i": (0, 3, 7), "iv": (5, 8, 12), "v": (7, 10, 14), "VI": (8, 12, 15),
}
PROGRESSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "major": (("I", "IV", "V", "I"), ("I", "ii", "V", "I"), ("I", "IV", "I", "V"), ("I", "V", "IV", "I")),
    "minor": (("i", "iv", "v", "i"), ("i", "VI", "iv", "i"), ("i", "iv", "i", "v"), ("i", "VI", "v", "i")),
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


def energy_word(bpm: float) -> str:
    """The tempo adjective used in captions (kept in one place so captions and tables agree)."""
    return "calm" if bpm < 80 else "relaxed" if bpm < 105 else "upbeat" if bpm < 135 else "energetic"


def caption(spec: MusicSpec) -> str:
    """e.g. "calm sad piano loop, A minor, 70 bpm"."""
    mood = "happy" if spec.mode == "major" else "sad"
    return f"{energy_word(spec.bpm)} {mood} {spec.lead} loop, {spec.key_name}, {round(spec.bpm)} bpm"


def random_spec(rng: np.random.Generator, **fixed: object) -> MusicSpec:
    """Draw a spec uniformly over keys, modes, tempi, timbres and levels; `fixed` pins fields."""
    mode = fixed.get("mode", rng.choice(["major", "minor"]))
    values: dict[str, object] = {
        "tonic": int(rng.integers(12)),
        "mode": str(mode),
        "bpm": float(round(rng.uniform(MIN_BPM, MAX_BPM))),
        "lead": str(rng.choice(["pad", "pluck", "piano"])),
        "density": float(rng.uniform()),
        "loudness": float(rng.uniform(0.3, 1.0)),
        "progression": int(rng.integers(len(PROGRESSIONS[str(mode)]))),
        "seed": int(rng.integers(2**31)),
    }
    values.update(fixed)
    return MusicSpec(**values)


# -- synthesis --------------------------------------------------------------------------------


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _tone(
    freq: float, seconds: float, sr: int, amps: np.ndarray, decays: np.ndarray,
    attack: float, release: float, stretch: float = 0.0,
) -> np.ndarray:
    """Additive note: partial k has amplitude amps[k] * exp(-decays[k] t); partials above 7 kHz are
    dropped so nothing aliases or sits outside the codec's band. float32 throughout: rendering the
    training set is dominated by these sines, and float32 phase error stays below 0.01 rad."""
    n = max(int(seconds * sr), 1)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    k = np.arange(1, len(amps) + 1, dtype=np.float64)
    partial_hz = k * freq * np.sqrt(1.0 + stretch * k * k)
    keep = partial_hz < min(7000.0, sr / 2 - 500)
    omega = (2 * np.pi * partial_hz[keep]).astype(np.float32)[:, None]
    env = amps[keep].astype(np.float32)[:, None] * np.exp(-decays[keep].astype(np.float32)[:, None] * t[None, :])
    y = np.einsum("kn,kn->n", env, np.sin(omega * t[None, :]))
    a = min(max(int(attack * sr), 1), n)
    r = min(max(int(release * sr), 1), n)
    y[:a] *= np.linspace(0.0, 1.0, a, endpoint=False, dtype=np.float32)
    y[n - r:] *= np.linspace(1.0, 0.0, r, dtype=np.float32)
    return y


def _pad(freq: float, seconds: float, sr: int) -> np.ndarray:
    k = np.arange(1, 6)
    amps, decays = 1.0 / k**2, np.full(5, 0.15)
    attack = min(0.3 * seconds, 0.4)
    detuned = _tone(freq * 2 ** (4 / 1200), seconds, sr, amps, decays, attack, 0.3)
    return 0.5 * (_tone(freq, seconds, sr, amps, decays, attack, 0.3) + detuned)


def _pluck(freq: float, seconds: float, sr: int) -> np.ndarray:
    k = np.arange(1, 9)
    return _tone(freq, seconds, sr, 1.0 / k**1.5, 4.0 + 3.0 * k, 0.003, 0.05)


def _piano(freq: float, seconds: float, sr: int) -> np.ndarray:
    k = np.arange(1, 9)
    return _tone(freq, seconds, sr, 1.0 / k**1.7, 1.2 + 0.8 * k, 0.004, 0.08, stretch=0.0004)


def _bass(freq: float, seconds: float, sr: int) -> np.ndarray:
    return _tone(freq, seconds, sr, np.array([1.0, 0.35, 0.12]), np.full(3, 2.5), 0.005, 0.05)


def _kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.3 * sr)) / sr
    sweep = 45.0 + 75.0 * np.exp(-t * 30.0)
    return np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t * 14.0)


def _noise_hit(sr: int, seconds: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = rng.standard_normal(t.size)
    bright = np.diff(noise, prepend=0.0)  # first difference: a cheap high-pass
    return bright * np.exp(-t * decay) * 0.5


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    body = _noise_hit(sr, 0.2, 25.0, rng)
    t = np.arange(body.size) / sr
    return body + 0.5 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t * 30.0)


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
    sr = sample_rate
    beat = 60.0 / spec.bpm
    buffer = np.zeros(int(round(spec.loop_seconds * sr)), dtype=np.float64)
    at = lambda beats: int(round(beats * beat * sr))  # noqa: E731 - sample index of a beat position

    chords = [CHORDS[name] for name in PROGRESSIONS[spec.mode][spec.progression]]
    root_midi = 72 + spec.tonic if spec.tonic < 6 else 60 + spec.tonic  # tonic between F#4 and F5
    chord_seconds = spec.beats_per_chord * beat
    step = 1.0 / spec.notes_per_beat
    for index, chord in enumerate(chords):
        first = index * spec.beats_per_chord
        root, third, fifth = (root_midi + offset for offset in chord)
        # Open voicing with the third on top (a tenth above the root): the third is the note that
        # decides major vs minor, and on top it is not masked by the root's overtones.
        voicing = (root, fifth, third + 12)
        # Chord bed: the pad is the lead or, quieter, the harmony under a pluck/piano lead.
        bed_gain = 0.55 if spec.lead == "pad" else 0.3
        for midi in voicing:
            _mix_into(buffer, at(first), _pad(_hz(midi), chord_seconds + 0.15, sr), bed_gain / 3)
        if spec.lead == "pad" and spec.notes_per_beat > 1:  # a pad alone has no pulse: re-strike softly
            for b in range(spec.beats_per_chord):
                for midi in voicing:
                    _mix_into(buffer, at(first + b), _pluck(_hz(midi), 0.25, sr), 0.08)
        if spec.lead in ("pluck", "piano"):
            voice, length = (_pluck, 0.5) if spec.lead == "pluck" else (_piano, 1.2)
            steps = spec.beats_per_chord * spec.notes_per_beat
            for s in range(steps):
                beat_of_chord, sub = divmod(s, spec.notes_per_beat)
                on_beat = sub == 0
                velocity = (1.0 if on_beat else 0.35) * rng.uniform(0.9, 1.0)
                # Beats alternate root and third (so even a two-beat chord at one note per beat
                # sounds its third, accented); fifths, then thirds, fill the subdivisions.
                if on_beat:
                    midi = root if beat_of_chord % 2 == 0 else third + 12
                else:
                    midi = fifth if sub % 2 == 1 else third
                note = _hz(midi)
                _mix_into(buffer, at(first + s * step), voice(note, min(length, 3 * step * beat + 0.1), sr),
                          0.35 * velocity)
        if spec.bass:  # on every beat, like the kick: anything slower would read as half tempo
            # E2..Eb3, and quiet: a loud low bass outweighs the chord (whose third carries the mode)
            # in every frame of a key-finding chroma, and its roots and fifths read as any mode.
            midi = 40 + (spec.tonic + chord[0] - 4) % 12
            for b in range(spec.beats_per_chord):
                _mix_into(buffer, at(first + b), _bass(_hz(midi), 0.9 * beat, sr), 0.08)

    if spec.drums:
        kick, snare = _kick(sr), _snare(sr, rng)
        for b in range(spec.loop_beats):
            _mix_into(buffer, at(b), kick, 0.6)
            if spec.notes_per_beat > 2 and b % 2 == 1:
                _mix_into(buffer, at(b), snare, 0.25)
            if spec.notes_per_beat > 1:
                for s in range(1, spec.notes_per_beat):
                    _mix_into(buffer, at(b + s * step), _noise_hit(sr, 0.06, 60.0, rng), 0.06)

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
