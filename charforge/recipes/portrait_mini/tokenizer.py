"""An offline CLIP BPE vocabulary for charforge-mini, learnt from the renderer's caption words.

The standard CLIP format (vocab.json + merges.txt, byte-level alphabet, "</w>" word ends) is kept so
that `CLIPTokenizer` and every SD tool load it unchanged. Merges are learnt by ordinary BPE on the
caption vocabulary until each caption word is one token; any other word still tokenises through the
byte-level alphabet (and any merges it happens to share), so user prompts and new textual-inversion
tokens work.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from charforge.recipes.portrait_mini import render

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable-character table (the base alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def caption_words() -> list[str]:
    """Every word a renderer caption can contain, with punctuation as its own token as CLIP splits it."""
    words: set[str] = set()
    for table in (render.HAIR_COLOURS, render.HAIR_STYLES, render.EYE_COLOURS, render.SKIN_TONES,
                  render.OUTFIT_COLOURS, render.BACKGROUND_COLOURS):
        words.update(table)
    for phrase in render.EXPRESSIONS.values():
        words.update(phrase.split())
    words.update(word for _, word in render.INTENSITY_WORDS)
    words.add(render.JOINER)
    words.update("portrait of a girl with hair eyes skin outfit background wearing glasses hat".split())
    words.update((",", "."))
    return sorted(words)


def _apply(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out, k = [], 0
    while k < len(seq):
        if k + 1 < len(seq) and (seq[k], seq[k + 1]) == pair:
            out.append(seq[k] + seq[k + 1])
            k += 2
        else:
            out.append(seq[k])
            k += 1
    return out


def learn_merges(words: list[str], known: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Plain BPE on `words` (each counted once) until every word is a single symbol.

    `known` merges are applied first, in order, and the new merges are learnt on what they leave, so
    appending the result to `known` changes no word the known merges already tokenised.
    Ties are broken by the pair itself so the result is deterministic.
    """
    table = _bytes_to_unicode()
    seqs = {}
    for w in words:
        chars = [table[b] for b in w.encode("utf-8")]
        chars[-1] += "</w>"
        for pair in known:
            chars = _apply(chars, pair)
        seqs[w] = chars
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for seq in seqs.values():
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += 1
        if not pairs:
            return merges
        best = min(pairs, key=lambda pr: (-pairs[pr], pr))
        merges.append(best)
        for w, seq in seqs.items():
            seqs[w] = _apply(seq, best)


def write_tokenizer_files(folder: str | Path, words: list[str] | None = None) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json that `CLIPTokenizer.from_pretrained` reads.

    `words` are the caption words to make single tokens (default: the portrait renderer's).
    """
    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges = learn_merges(caption_words() if words is None else sorted(set(words)))
    for a, b in merges:
        vocab_list.append(a + b)
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return _write(folder, vocab, merges)


def read_bpe(folder: str | Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a saved CLIP tokenizer folder (tokenizer.json, or vocab.json + merges.txt)."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return dict(model["vocab"]), merges
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    return vocab, [tuple(line.split(" ")) for line in lines if line]


def extend_tokenizer(source: str | Path, folder: str | Path, words: list[str] | None = None) -> list[int]:
    """Write into `folder` the tokenizer of `source` plus merges that make each of `words` one token.

    Existing ids and tokenisations are unchanged (new merges come after the old ones, new tokens get
    the next ids), so a text encoder trained on `source` only needs new embedding rows. Returns the
    new token ids.
    """
    vocab, known = read_bpe(source)
    merges = learn_merges(caption_words() if words is None else sorted(set(words)), known)
    vocab = dict(vocab)
    added = []
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            added.append(vocab[a + b])
    _write(folder, vocab, [*known, *merges])
    return added


def _write(folder: str | Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2),
        encoding="utf-8")
    return folder


def build_tokenizer(folder: str | Path, words: list[str] | None = None) -> CLIPTokenizer:
    """Write the files into `folder` and load them back, so what is trained is exactly what ships."""
    write_tokenizer_files(folder, words)
    return CLIPTokenizer.from_pretrained(str(folder))
