"""From words a person types to the token columns of a cross-attention map, over every prompt chunk.

Attention control speaks in key columns of the cross-attention map, users speak in words. CLIP's BPE
splits text at whitespace and punctuation before merging, and marks word ends (`</w>`), so a word's
tokens are found exactly by searching its own tokenization inside the prompt's: "hair" never matches
inside "hairband". The prompt's tokens are the ones `charforge.engine.prompts` encodes (emphasis
markup removed, each weighted piece tokenized on its own).

A long prompt is encoded in chunks of 77 columns (BOS, 75 tokens, EOS, padding) laid side by side,
so the map is 77·k columns wide and token p of the prompt sits at column 77·(p // 75) + 1 + p % 75.
Every table here (word columns, word-swap mapper, refinement alignment, per-column weights) is built
for a given number of chunks: the controllers size theirs to the conditioning the loop runs with.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

import torch

from charforge.engine.prompts import CHUNK_TOKENS, expand_tokens, parse_emphasis, weighted_tokens
from charforge.errors import InvalidInput

WIDTH = CHUNK_TOKENS + 2  # columns per chunk: BOS, 75 tokens, EOS and padding


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of `prompt` as the text encoder gets them, without BOS/EOS/padding or emphasis markup."""
    return weighted_tokens(tokenizer, prompt)[0]


def _plain_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(expand_tokens(tokenizer, text), add_special_tokens=False).input_ids)


def chunk_count(tokenizer: Any, *prompts: str) -> int:
    """How many chunks `encode_text` gives these prompts encoded together (at least one)."""
    longest = max((len(prompt_ids(tokenizer, p)) for p in prompts), default=0)
    return max(1, -(-longest // CHUNK_TOKENS))


def chunks_of(columns: int) -> int:
    """Chunks of a cross-attention map `columns` wide (the conditioning's sequence length)."""
    if columns < WIDTH or columns % WIDTH:
        raise InvalidInput(f"a cross-attention map of {columns} columns is not whole chunks of {WIDTH}")
    return columns // WIDTH


def token_column(position: int) -> int:
    """Map column of the prompt's token at `position` (0-based, BOS/EOS not counted)."""
    chunk, offset = divmod(position, CHUNK_TOKENS)
    return chunk * WIDTH + 1 + offset


def max_columns(tokenizer: Any, *prompts: str) -> int:
    """Width of the cross-attention map of these prompts: 77 columns per chunk they need."""
    return WIDTH * chunk_count(tokenizer, *prompts)


def word_columns(tokenizer: Any, prompt: str, word: str, chunks: int | None = None) -> list[int]:
    """Map columns of every occurrence of `word` (one word or a phrase) in `prompt`, in any chunk.

    `chunks` is the number of chunks the prompt is encoded in when that is fewer than it needs (an
    edit's target cut to its source's length); occurrences past them are not in the map. Raises
    InvalidInput naming the word and prompt when it does not occur (or only past the map), because
    a silent empty selection would make a blend or reweight quietly do nothing.
    """
    needle = _plain_ids(tokenizer, word.strip())
    haystack = prompt_ids(tokenizer, prompt)
    if not needle:
        raise InvalidInput(f"empty word given for prompt '{prompt}'")
    found: list[int] = []
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            found.extend(token_column(p) for p in range(start, start + len(needle)))
    if not found:
        raise InvalidInput(f"word '{word}' does not occur in prompt '{prompt}'")
    columns = sorted({c for c in found if chunks is None or c < chunks * WIDTH})
    if not columns:
        raise InvalidInput(
            f"word '{word}' lies past the {chunks * CHUNK_TOKENS} tokens the prompt is encoded in: '{prompt}'"
        )
    return columns


def _tail(count: int, chunk: int) -> range:
    """Columns of one chunk after its tokens (EOS, then padding) for a prompt of `count` tokens."""
    held = min(CHUNK_TOKENS, max(0, count - chunk * CHUNK_TOKENS))
    return range(chunk * WIDTH + 1 + held, (chunk + 1) * WIDTH)


def _frame(source_count: int, target_count: int, chunks: int) -> Iterator[tuple[int, int]]:
    """(source, target) column pairs of what is not a prompt token: each chunk's BOS with its BOS, and
    its EOS and padding with the other's in order (so they keep their role when lengths differ; the
    last padding columns of the shorter one then have no partner)."""
    for chunk in range(chunks):
        yield chunk * WIDTH, chunk * WIDTH
        yield from zip(_tail(source_count, chunk), _tail(target_count, chunk))


def _word_ids(tokenizer: Any, prompt: str) -> list[list[int]]:
    return [_plain_ids(tokenizer, word) for word in parse_emphasis(prompt)[0].split()]


def replacement_mapper(tokenizer: Any, source: str, target: str, chunks: int | None = None) -> torch.Tensor:
    """(C, C) matrix M with target_map = source_map @ M for a word swap (Prompt-to-Prompt replace).

    C is 77 columns per chunk (by default as many chunks as the longer prompt needs). Prompts must have
    the same number of whitespace-separated words. Equal words map token to token; a swapped word
    whose token count differs spreads each source token's attention evenly over the new word's tokens,
    which keeps the attention mass of the word (rows of M sum to one), even across a chunk border.
    """
    source_words, target_words = _word_ids(tokenizer, source), _word_ids(tokenizer, target)
    if len(source_words) != len(target_words):
        raise InvalidInput(
            f"replace needs the same number of words in both prompts ({len(source_words)} vs "
            f"{len(target_words)}); use refine for added or removed words"
        )
    chunks = chunks or chunk_count(tokenizer, source, target)
    mapper = torch.zeros(chunks * WIDTH, chunks * WIDTH)
    s_pos, t_pos = 0, 0
    for s_ids, t_ids in zip(source_words, target_words):
        if len(s_ids) == len(t_ids):
            pairs = [(s_pos + k, t_pos + k, 1.0) for k in range(len(s_ids))]
        else:
            pairs = [(s, t, 1.0 / len(t_ids)) for s in range(s_pos, s_pos + len(s_ids))
                     for t in range(t_pos, t_pos + len(t_ids))]  # fmt: skip
        for s, t, value in pairs:
            s_col, t_col = token_column(s), token_column(t)
            if s_col < len(mapper) and t_col < len(mapper):
                mapper[s_col, t_col] = value
        s_pos += len(s_ids)
        t_pos += len(t_ids)
    for s_col, t_col in _frame(s_pos, t_pos, chunks):
        mapper[s_col, t_col] = 1.0
    return mapper


def refinement_alignment(
    tokenizer: Any, source: str, target: str, chunks: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target column: the aligned source column and 1.0, or (0, 0.0) for an added token.

    Alignment is a longest-matching-blocks diff of the token sequences (difflib), so words added
    anywhere in the prompt leave the remaining tokens paired with their originals, whichever chunk
    either lands in.
    """
    s_ids, t_ids = prompt_ids(tokenizer, source), prompt_ids(tokenizer, target)
    chunks = chunks or chunk_count(tokenizer, source, target)
    columns = chunks * WIDTH
    index = torch.zeros(columns, dtype=torch.long)
    alpha = torch.zeros(columns)
    matcher = difflib.SequenceMatcher(a=s_ids, b=t_ids, autojunk=False)
    blocks = matcher.get_matching_blocks()
    pairs = [(token_column(b.a + k), token_column(b.b + k)) for b in blocks for k in range(b.size)]
    for s_col, t_col in [*pairs, *_frame(len(s_ids), len(t_ids), chunks)]:
        if t_col < columns and s_col < columns:
            index[t_col], alpha[t_col] = s_col, 1.0
    return index, alpha


def emphasis_weights(tokenizer: Any, prompt: str) -> tuple[str, torch.Tensor]:
    """Plain prompt and a per-column weight vector (1.0 where no emphasis, 77 per chunk) for a reweight."""
    plain, segments = parse_emphasis(prompt)
    ids, token_weights = weighted_tokens(tokenizer, prompt)
    if ids != _plain_ids(tokenizer, plain):
        raise InvalidInput(f"emphasis brackets must enclose whole words in prompt '{prompt}'")
    weights = torch.ones(max_columns(tokenizer, plain))
    for position, weight in enumerate(token_weights):
        weights[token_column(position)] = weight
    return plain, weights


def fit_columns(weights: torch.Tensor, columns: int, fill: float = 1.0) -> torch.Tensor:
    """A per-column vector cut or extended (with `fill`, for chunks the prompt left empty) to `columns`."""
    if weights.numel() >= columns:
        return weights[:columns]
    return torch.cat([weights, weights.new_full((columns - weights.numel(),), fill)])
