"""Text columns judged through numeric descriptors, never through the text itself.

A column of free text cannot travel as a distribution (every value is new) and must not
travel at all (it is user data). So each row becomes a few numbers, computed where the text
is (the app's recorder thread, or the profile builder), and each number is a numeric column
with its own drift verdict:

* ``<column>.chars``: length in characters;
* ``<column>.tokens``: length in tokens (runs of word characters, ``\\w+``, lower-cased);
* ``<column>.oov_share``: share of the row's tokens outside the reference vocabulary
  (missing for a row without tokens, and not computed without a reference vocabulary);
* ``<column>.empty``: 1 for an empty or blank row, else 0;
* ``<column>.non_ascii_share``: share of the row's characters outside ASCII.

The reference profile keeps a bounded vocabulary (the ``DEFAULT_MAX_VOCABULARY`` most
frequent tokens). Its own ``oov_share`` column is measured on held-out rows (every
``HOLDOUT_EVERY``-th row, whose tokens are not counted into the vocabulary), so production
text from the training distribution scores the same share instead of a spuriously higher one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import semconv
from driftline.columns import CategoryColumn

# Tokens: maximal runs of Unicode word characters, lower-cased.
TOKENIZER = "regex-\\w+-lower"
_TOKEN = re.compile(r"\w+")
DEFAULT_MAX_VOCABULARY = 10_000
# One row in this many is held out of the vocabulary to measure the reference's oov_share.
HOLDOUT_EVERY = 10
# Held-out rows kept (a uniform reservoir sample) to compute the reference oov_share from.
DEFAULT_OOV_SAMPLE_ROWS = 5_000
# Held-out texts are cut to this many characters: the sample's memory stays bounded.
MAX_SAMPLE_TEXT_CHARS = 4_096
DESCRIPTORS = (semconv.TEXT_CHARS, semconv.TEXT_TOKENS, semconv.TEXT_OOV_SHARE,
               semconv.TEXT_EMPTY, semconv.TEXT_NON_ASCII_SHARE)


def descriptor_name(column: str, descriptor: str) -> str:
    """``review.chars``: the monitored column of one descriptor of a text column."""
    return f"{column}{semconv.DERIVED_SEPARATOR}{descriptor}"


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _text(value: Any) -> str | None:
    """The row as text; None when missing (None, NaN, pandas NA)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        if value != value:  # NaN-like
            return None
    except (TypeError, ValueError):
        return None  # pd.NA
    return str(value)


def descriptors(column: str, values: Iterable[Any],
                vocabulary: Collection[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, float64 values) of each descriptor of ``values``; a missing row is NaN in all.

    ``oov_share`` only with a ``vocabulary``: without the reference's there is nothing to
    be outside of.
    """
    texts = [v if type(v) is str else _text(v) for v in values]
    n = len(texts)
    chars = np.full(n, np.nan)
    counts = np.full(n, np.nan)
    empty = np.full(n, np.nan)
    non_ascii = np.full(n, np.nan)
    oov = np.full(n, np.nan) if vocabulary is not None else None
    known = vocabulary.__contains__ if vocabulary is not None else None
    find = _TOKEN.findall
    for i, text in enumerate(texts):
        if text is None:
            continue
        length = len(text)
        found = find(text.lower())
        chars[i] = length
        counts[i] = len(found)
        empty[i] = 0.0 if text and not text.isspace() else 1.0
        # isascii() is O(1) for the usual all-ASCII string; encode only the others.
        non_ascii[i] = 0.0 if text.isascii() \
            else (length - len(text.encode("ascii", "ignore"))) / length
        if known is not None and found:
            oov[i] = (len(found) - sum(map(known, found))) / len(found)
    named = [(semconv.TEXT_CHARS, chars), (semconv.TEXT_TOKENS, counts),
             (semconv.TEXT_OOV_SHARE, oov), (semconv.TEXT_EMPTY, empty),
             (semconv.TEXT_NON_ASCII_SHARE, non_ascii)]
    return [(descriptor_name(column, name), array) for name, array in named
            if array is not None]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """A profile's bounded vocabulary of one text column: tokens, most frequent first."""

    tokens: tuple[str, ...]
    counts: tuple[int, ...]
    tokenizer: str = TOKENIZER

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer,
                "tokens": [[t, c] for t, c in zip(self.tokens, self.counts, strict=True)]}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Vocabulary:
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                and isinstance(p[1], int) for p in data["tokens"]):
            raise ValueError(f"{where}: must be an object with 'tokens', a list of "
                             "[token, count] pairs")
        tokenizer = data.get("tokenizer", TOKENIZER)
        if tokenizer != TOKENIZER:
            raise ValueError(f"{where}.tokenizer: unknown tokenizer {tokenizer!r}; this "
                             f"Driftline tokenizes as {TOKENIZER!r}")
        pairs = data["tokens"]
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), tokenizer)

    def merged(self, other: Vocabulary, max_size: int) -> Vocabulary:
        counts: dict[str, int] = dict(zip(self.tokens, self.counts, strict=True))
        for token, count in zip(other.tokens, other.counts, strict=True):
            counts[token] = counts.get(token, 0) + count
        kept = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_size]
        return Vocabulary(tuple(t for t, _ in kept), tuple(c for _, c in kept), self.tokenizer)


class TextProfiler:
    """Streams one text column of a reference: descriptors of every row, a bounded
    vocabulary of the rows not held out, and a reservoir of held-out rows whose
    ``oov_share`` is computed against the final vocabulary in ``finish``."""

    def __init__(self, column: str, max_vocabulary: int = DEFAULT_MAX_VOCABULARY,
                 sample_rows: int = DEFAULT_OOV_SAMPLE_ROWS, seed: int = 0) -> None:
        self.column = column
        self.max_vocabulary = max_vocabulary
        self._counts = CategoryColumn(max_vocabulary)
        self._sample: list[str] = []
        self._sample_rows = sample_rows
        self._held_out = 0
        self._rows = 0
        self._rng = np.random.default_rng(seed)

    def add(self, values: Iterable[Any]) -> list[tuple[str, np.ndarray]]:
        """The chunk's descriptors (all but ``oov_share``); learns its vocabulary."""
        texts = list(values)
        learned: list[str] = []
        for text in texts:
            value = _text(text)
            held_out = self._rows % HOLDOUT_EVERY == 0
            self._rows += 1
            if value is None:
                continue
            if held_out:
                self._keep(value[:MAX_SAMPLE_TEXT_CHARS])
            else:
                learned += tokens(value)
        if learned:
            self._counts.add(np.array(learned, dtype=object))
        return descriptors(self.column, texts)

    def _keep(self, text: str) -> None:
        """Reservoir sampling (algorithm R): every held-out row equally likely kept."""
        self._held_out += 1
        if len(self._sample) < self._sample_rows:
            self._sample.append(text)
            return
        slot = int(self._rng.integers(self._held_out))
        if slot < self._sample_rows:
            self._sample[slot] = text

    def finish(self) -> tuple[Vocabulary, np.ndarray]:
        """The vocabulary and the held-out rows' ``oov_share`` values."""
        kept, _ = self._counts.top()
        ordered = sorted(kept.items(), key=lambda item: (-item[1], item[0]))
        vocabulary = Vocabulary(tuple(t for t, _ in ordered), tuple(c for _, c in ordered))
        known = frozenset(vocabulary.tokens)
        [(_, oov)] = [(n, v) for n, v in descriptors(self.column, self._sample, known)
                      if n == descriptor_name(self.column, semconv.TEXT_OOV_SHARE)]
        return vocabulary, oov
