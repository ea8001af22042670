"""Pitch-class names and modes shared by analysis and the music recipes."""

from __future__ import annotations

from typing import Literal

Mode = Literal["major", "minor"]
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
