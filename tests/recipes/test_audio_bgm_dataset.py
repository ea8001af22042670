"""The BGM training source: mood words, labels that follow valence/arousal, tokens, images, cache."""

from __future__ import annotations

import numpy as np
import pytest

from charforge.audio import analysis
from charforge.audio.codec import SpectrogramCodec
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import dataset as bgm_dataset
from charforge.recipes.bgm_mini import train as bgm_model
from charforge.recipes.bgm_mini.dataset import BGMSource, draw_sample, mood_prompt, mood_words
from charforge.recipes.portrait_mini.tokenizer import build_tokenizer


def test_mood_words_cover_the_square_and_split_valence_at_zero() -> None:
    assert mood_words(-0.9, -0.9) == ("calm", "sad")
    assert mood_words(0.9, 0.9) == ("energetic", "happy")
    assert mood_words(-0.05, 0.2)[1] == "melancholic" and mood_words(0.05, 0.2)[1] == "hopeful"
    assert mood_words(1.0, 1.0) == ("energetic", "happy")  # closed upper edge
    assert mood_prompt(0.7, -0.7, "pad") == "calm happy pad loop"
    with pytest.raises(InvalidInput, match="valence"):
        mood_words(1.5, 0.0)
    with pytest.raises(InvalidInput, match="lead"):
        mood_prompt(0.0, 0.0, "kazoo")


def test_drawn_labels_follow_valence_and_arousal() -> None:
    samples = [draw_sample(7, i) for i in range(300)]
    assert all((s.spec.mode == "major") == (s.valence > 0) for s in samples)
    assert all(abs(s.valence) >= bgm_dataset.MIN_VALENCE for s in samples)
    arousal = np.array([s.arousal for s in samples])
    assert np.corrcoef(arousal, [s.spec.bpm for s in samples])[0, 1] > 0.9
    assert np.corrcoef(arousal, [s.spec.density for s in samples])[0, 1] > 0.6
    assert np.corrcoef(arousal, [s.spec.loudness for s in samples])[0, 1] > 0.6
    assert {s.spec.tonic for s in samples} == set(bgm_dataset.TONICS)
    # Captions start with the mood prompt; key and tempo appear in some captions only.
    assert all(s.caption.startswith(mood_prompt(s.valence, s.arousal, s.spec.lead)) for s in samples)
    with_key = [s for s in samples if s.spec.key_name in s.caption]
    assert 0.3 < len(with_key) / len(samples) < 0.7
    assert draw_sample(7, 5) == draw_sample(7, 5) and draw_sample(7, 5) != draw_sample(8, 5)


def test_every_caption_word_is_one_token(tmp_path) -> None:
    tok = build_tokenizer(tmp_path / "tok", bgm_dataset.caption_words())
    for i in range(200):
        caption = draw_sample(3, i).caption
        pieces = tok.tokenize(caption)
        words = caption.lower().replace(",", " , ").split()
        expected = sum(len(w) if w.isdigit() else 1 for w in words)  # CLIP splits digits
        assert len(pieces) == expected, caption
    assert tok.tokenize("melancholic")[0] == "melancholic</w>"


def test_images_are_mini_spectrograms_of_the_drawn_music() -> None:
    source = BGMSource(11, 6)
    x, caption = source[4]
    p = SpectrogramCodec("mini").preset
    assert x.shape == (3, p.n_mels, p.width) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert np.array_equal(x[0].numpy(), x[2].numpy())
    assert caption == source.caption(4)
    again = BGMSource(11, 6)
    assert np.array_equal(again.image(4), source.image(4))
    # Windows of one loop differ (random offsets) but share the drawn music.
    assert source.sample(3) == source.sample(4) and not np.array_equal(source.image(3), source.image(4))
    # The picture decodes to music of the labelled mode.
    audio = SpectrogramCodec("mini").image_to_audio(source.image(4), seed=0)
    assert analysis.estimate_key(audio, p.sample_rate).mode == source.sample(4).spec.mode
    with pytest.raises(IndexError):
        source.image(6)


def test_prerender_cache_is_reused_only_when_it_matches(tmp_path) -> None:
    cache = tmp_path / "spectrograms.npy"
    first = BGMSource(5, 4)
    first.prerender(cache)
    assert cache.is_file() and first._done.all()
    loaded = BGMSource(5, 4)
    loaded.prerender(cache)
    assert np.array_equal(loaded._pixels, first._pixels)
    other = BGMSource(6, 4)
    other.prerender(cache)  # different seed: re-rendered, cache rewritten
    assert not np.array_equal(other._pixels, first._pixels)
    with pytest.raises(InvalidInput):
        BGMSource(5, 0)


def test_architecture_shapes_follow_the_mini_preset() -> None:
    height, width = bgm_model.image_size()
    assert (height, width) == (64, 256)
    unet, vae = bgm_model.unet_config(), bgm_model.vae_config()
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    assert unet["sample_size"] == [height // factor, width // factor]
    assert unet["in_channels"] == vae["latent_channels"]
    assert unet["down_block_types"][0] == "DownBlock2D"  # no attention at 16 x 64
