"""From words a person types to the token columns of a cross-attention map.

Attention control speaks in token positions (column j of a 77-wide cross-attention map), users speak
in words. CLIP's BPE splits text at whitespace and punctuation before merging, and marks word ends
(`</w>`), so a word's tokens are found exactly by searching its own tokenization inside the
prompt's: "hair" never matches inside "hairband".
"""

from __future__ import annotations

import difflib
from typing import Any

import torch

from charforge.engine.prompts import expand_tokens, parse_emphasis
from charforge.errors import InvalidInput


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of `prompt` without BOS/EOS/padding (position p here is column p + 1 of a map)."""
    return list(tokenizer(expand_tokens(tokenizer, prompt), add_special_tokens=False).input_ids)


def max_columns(tokenizer: Any) -> int:
    """Width of a cross-attention map: the text encoder's padded length (77 for CLIP)."""
    return int(tokenizer.model_max_length)


def word_columns(tokenizer: Any, prompt: str, word: str) -> list[int]:
    """Map columns of every occurrence of `word` (one word or a phrase) in `prompt`.

    Raises InvalidInput naming the word and prompt when it does not occur, because a silent empty
    selection would make a blend or reweight quietly do nothing.
    """
    needle = prompt_ids(tokenizer, word.strip())
    haystack = prompt_ids(tokenizer, prompt)
    if not needle:
        raise InvalidInput(f"empty word given for prompt '{prompt}'")
    limit = max_columns(tokenizer) - 1  # the last column is always EOS/padding
    columns: list[int] = []
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            columns.extend(p + 1 for p in range(start, start + len(needle)) if p + 1 < limit)
    if not columns:
        raise InvalidInput(f"word '{word}' does not occur in prompt '{prompt}'")
    return sorted(set(columns))


def _chunk_ids(tokenizer: Any, prompt: str) -> list[list[int]]:
    return [prompt_ids(tokenizer, chunk) for chunk in prompt.split()]


def replacement_mapper(tokenizer: Any, source: str, target: str) -> torch.Tensor:
    """(C, C) matrix M with target_map = source_map @ M for a word swap (Prompt-to-Prompt replace).

    Prompts must have the same number of whitespace-separated words. Equal words map token to token;
    a swapped word whose token count differs spreads each source token's attention evenly over the
    new word's tokens, which keeps the attention mass of the word (rows of M sum to one). Columns after
    the prompt (EOS and padding) map in order, so they keep their role even when lengths differ; the
    last padding columns of the shorter prompt then have no partner and map to nothing.
    """
    source_chunks, target_chunks = _chunk_ids(tokenizer, source), _chunk_ids(tokenizer, target)
    if len(source_chunks) != len(target_chunks):
        raise InvalidInput(
            f"replace needs the same number of words in both prompts ({len(source_chunks)} vs "
            f"{len(target_chunks)}); use refine for added or removed words"
        )
    columns = max_columns(tokenizer)
    mapper = torch.zeros(columns, columns)
    mapper[0, 0] = 1.0
    s_pos, t_pos = 1, 1
    for s_ids, t_ids in zip(source_chunks, target_chunks):
        if len(s_ids) == len(t_ids):
            for k in range(len(s_ids)):
                _set(mapper, s_pos + k, t_pos + k, 1.0)
        else:
            for s in range(s_pos, s_pos + len(s_ids)):
                for t in range(t_pos, t_pos + len(t_ids)):
                    _set(mapper, s, t, 1.0 / len(t_ids))
        s_pos += len(s_ids)
        t_pos += len(t_ids)
    while s_pos < columns and t_pos < columns:
        mapper[s_pos, t_pos] = 1.0
        s_pos += 1
        t_pos += 1
    return mapper


def _set(mapper: torch.Tensor, s: int, t: int, value: float) -> None:
    if s < mapper.shape[0] and t < mapper.shape[1]:
        mapper[s, t] = value


def refinement_alignment(tokenizer: Any, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target column: the aligned source column and 1.0, or (0, 0.0) for an added token.

    Alignment is a longest-matching-blocks diff of the token sequences (difflib), so words added
    anywhere in the prompt leave the remaining tokens paired with their originals.
    """
    s_ids, t_ids = prompt_ids(tokenizer, source), prompt_ids(tokenizer, target)
    columns = max_columns(tokenizer)
    index = torch.zeros(columns, dtype=torch.long)
    alpha = torch.zeros(columns)
    index[0], alpha[0] = 0, 1.0
    matcher = difflib.SequenceMatcher(a=s_ids, b=t_ids, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            t_col, s_col = block.b + k + 1, block.a + k + 1
            if t_col < columns and s_col < columns:
                index[t_col], alpha[t_col] = s_col, 1.0
    s_col, t_col = len(s_ids) + 1, len(t_ids) + 1
    while s_col < columns and t_col < columns:  # EOS and padding follow each other
        index[t_col], alpha[t_col] = s_col, 1.0
        s_col += 1
        t_col += 1
    return index, alpha


def emphasis_weights(tokenizer: Any, prompt: str) -> tuple[str, torch.Tensor]:
    """Plain prompt and a per-column weight vector (1.0 where no emphasis) for a reweight controller."""
    plain, segments = parse_emphasis(prompt)
    full = prompt_ids(tokenizer, plain)
    weights = torch.ones(max_columns(tokenizer))
    position = 1
    pieces: list[int] = []
    for text, w in segments:
        ids = prompt_ids(tokenizer, text)
        for p in range(position, min(position + len(ids), weights.numel() - 1)):
            weights[p] = w
        position += len(ids)
        pieces.extend(ids)
    if pieces != full:
        raise InvalidInput(f"emphasis brackets must enclose whole words in prompt '{prompt}'")
    return plain, weights
