"""Music as images: the spectrogram codec, procedural training music and the measures of both."""
