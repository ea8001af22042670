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
    words.update("portrait of a girl with hair eyes skin outfit background wearing glasses hat".split())
    words.update((",", "."))
    return sorted(words)


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE on `words` (each counted once) until every word is a single symbol.

    Ties are broken by the pair itself so the result is deterministic.
    """
    table = _bytes_to_unicode()
    seqs = {}
    for w in words:
        chars = [table[b] for b in w.encode("utf-8")]
        chars[-1] += "</w>"
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
            out, k = [], 0
            while k < len(seq):
                if k + 1 < len(seq) and (seq[k], seq[k + 1]) == best:
                    out.append(seq[k] + seq[k + 1])
                    k += 2
                else:
                    out.append(seq[k])
                    k += 1
            seqs[w] = out


def write_tokenizer_files(folder: str | Path, words: list[str] | None = None) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json that `CLIPTokenizer.from_pretrained` reads.

    `words` are the caption words to make single tokens (default: the portrait renderer's).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges = learn_merges(caption_words() if words is None else sorted(set(words)))
    for a, b in merges:
        vocab_list.append(a + b)
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
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
