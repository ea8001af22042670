"""The BGM training source: mood words, labels that follow valence/arousal, tokens, images, cache."""

from __future__ import annotations

import numpy as np
import pytest

from charforge.audio.codec import SpectrogramCodec
from charforge.audio.mood import mood_table, plan_music
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import dataset as bgm_dataset
from charforge.recipes.bgm_mini import train as bgm_model
from charforge.recipes.bgm_mini.dataset import BGMSource, draw_sample, mood_prompt, mood_words
from charforge.recipes.bgm_mini.listeners import estimate_keys
from charforge.recipes.portrait_mini.tokenizer import build_tokenizer


def test_mood_words_come_from_the_shared_table_and_split_valence_at_zero() -> None:
    table = mood_table()
    assert mood_words(-0.9, -0.9) == (table.arousal.words[0], table.valence.words[0])
    assert mood_words(0.9, 0.9) == (table.arousal.words[-1], table.valence.words[-1])
    assert mood_words(1.0, 1.0) == mood_words(0.9, 0.9)  # closed upper edge
    neg, pos = mood_words(-0.05, 0.2)[1], mood_words(0.05, 0.2)[1]
    assert table.valence.modes[table.valence.words.index(neg)] == "minor"
    assert table.valence.modes[table.valence.words.index(pos)] == "major"
    assert mood_prompt(0.7, -0.7, "pad") == plan_music(0.7, -0.7, mood_table({"lead": "pad"})).prompt
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
    assert np.corrcoef([s.valence for s in samples], [s.spec.brightness for s in samples])[0, 1] > 0.9
    assert {s.spec.tonic for s in samples} == set(bgm_dataset.TONICS)
    # Captions are the runtime's prompt for the drawn point at the tempo rendered; some drop the tempo.
    table = mood_table()
    for s in samples:
        words, _, tempo = s.caption.partition(", ")
        assert words == mood_prompt(s.valence, s.arousal, s.spec.lead).split(", ")[0]
        if tempo:
            assert abs(int(tempo.split()[0]) - s.spec.bpm) <= table.bpm_step / 2
    with_tempo = sum("bpm" in s.caption for s in samples) / len(samples)
    assert 0.75 < with_tempo < 0.95
    assert draw_sample(7, 5) == draw_sample(7, 5) and draw_sample(7, 5) != draw_sample(8, 5)


def test_every_caption_word_is_one_token(tmp_path) -> None:
    tok = build_tokenizer(tmp_path / "tok", bgm_dataset.caption_words())
    for i in range(200):
        caption = draw_sample(3, i).caption
        pieces = tok.tokenize(caption)
        words = caption.lower().replace(",", " , ").split()
        expected = sum(len(w) if w.isdigit() else 1 for w in words)  # CLIP splits digits
        assert len(pieces) == expected, caption
    assert all(tok.tokenize(w) == [f"{w}</w>"] for w in mood_table().valence.words + mood_table().arousal.words)


@pytest.mark.slow
def test_images_are_full_band_spectrograms_of_the_drawn_music() -> None:
    source = BGMSource(11, 6)
    x, caption = source[4]
    p = SpectrogramCodec("full").preset
    assert p.f_max >= 8000
    assert x.shape == (3, p.n_mels, p.width) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert np.array_equal(x[0].numpy(), x[2].numpy())
    assert caption == source.caption(4)
    again = BGMSource(11, 6)
    assert np.array_equal(again.image(4), source.image(4))
    # Windows of one loop differ (random offsets) but share the drawn music.
    assert source.sample(3) == source.sample(4) and not np.array_equal(source.image(3), source.image(4))
    # The picture decodes to music of the labelled mode, as an independent listener hears it.
    audio = SpectrogramCodec("full").image_to_audio(source.image(4), seed=0)
    assert all(k.mode == source.sample(4).spec.mode for k in estimate_keys(audio, p.sample_rate).values())
    with pytest.raises(IndexError):
        source.image(6)


@pytest.mark.slow
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


def test_architecture_shapes_follow_the_full_preset() -> None:
    height, width = bgm_model.image_size()
    assert (height, width) == (128, 256)
    unet, vae = bgm_model.unet_config(), bgm_model.vae_config()
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    assert unet["sample_size"] == [height // factor, width // factor]
    assert unet["in_channels"] == vae["latent_channels"]
    # attention only where the latent grid has at most 16 x 16 positions
    size = height // factor * width // factor
    for level, block in enumerate(unet["down_block_types"]):
        assert ("CrossAttn" in block) <= (size // 4**level <= 256), block
