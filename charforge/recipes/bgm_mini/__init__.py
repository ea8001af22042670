"""charforge-mini-bgm: procedural music, its mel-spectrogram dataset, training and evaluation."""
