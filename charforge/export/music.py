"""BGM for engines: the stored loop re-encoded as Ogg Vorbis, with where its loop starts.

charforge's loops are whole bars with a cross-faded seam, so the loop is the whole file and its loop
point is 0 s; engines that honour loop tags get them from the same numbers. This is the one place
the export writes audio: when `charforge.audio` gains Vorbis comment writing (LOOPSTART/LOOPLENGTH in
samples, the RPG Maker convention), it is called from here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import soundfile as sf

from charforge.audio.audiofile import audio_bytes
from charforge.export.pack import Track


@dataclass(frozen=True)
class LoopedAudio:
    data: bytes  # Ogg Vorbis
    sample_rate: int
    loop_start: int  # samples
    loop_length: int  # samples

    @property
    def loop_start_seconds(self) -> float:
        return self.loop_start / self.sample_rate


def ogg_loop(track: Track) -> LoopedAudio:
    """The track's stored audio (sha256-checked) as Ogg Vorbis; the loop spans the whole file."""
    samples, rate = sf.read(io.BytesIO(track.audio.read_bytes()), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return LoopedAudio(audio_bytes(mono, rate, ".ogg"), int(rate), 0, int(mono.size))
