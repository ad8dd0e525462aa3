"""Text corruptions: keyboard typos, swapped characters, dropped words; and the edit distance they are checked by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Modality, RandomState, as_generator, check_severity

_QWERTY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    positions = {char: (row, column) for row, keys in enumerate(_QWERTY_ROWS) for column, char in enumerate(keys)}
    neighbours = {}
    for char, (row, column) in positions.items():
        near = [
            other
            for other, (other_row, other_column) in positions.items()
            if other != char and abs(other_row - row) <= 1 and abs(other_column - column) <= 1
        ]
        neighbours[char] = "".join(sorted(near))
    return neighbours


KEYBOARD_NEIGHBOURS: dict[str, str] = _keyboard_neighbours()
"""QWERTY neighbours of each lower-case letter and digit (keys at most one row and one column away)."""


@dataclass(frozen=True)
class TextCorruption:
    """Base class of text corruptions.

    Args:
        severity (`int`, defaults to 1): Strength, from 1 to 5.
    """

    severity: int = 1

    name: ClassVar[str] = ""
    modality: ClassVar[Modality] = "text"
    RATES: ClassVar[tuple[float, ...]] = ()

    def __post_init__(self) -> None:
        check_severity(self.severity)

    @property
    def rate(self) -> float:
        """The per-character (or per-word) probability of a change at this severity."""
        return self.RATES[self.severity - 1]

    def __call__(self, text: str, rng: RandomState = 0) -> str:
        """Corrupts one string.

        Args:
            text (`str`): The text.
            rng (`int` or `np.random.Generator`, defaults to 0): The seed or generator of the random draws.

        Returns:
            `str`: The corrupted text.
        """
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} expects a string, got {type(text).__name__}.")
        return self._corrupt(text, as_generator(rng))

    def _corrupt(self, text: str, rng: np.random.Generator) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class KeyboardTypos(TextCorruption):
    """Replaces each letter or digit, with probability `RATES[severity]`, by a neighbouring QWERTY key (same case)."""

    name: ClassVar[str] = "keyboard_typos"
    RATES: ClassVar[tuple[float, ...]] = (0.02, 0.04, 0.07, 0.10, 0.15)

    def _corrupt(self, text, rng):
        draws = rng.random(len(text))
        picks = rng.random(len(text))
        characters = list(text)
        for position, char in enumerate(characters):
            neighbours = KEYBOARD_NEIGHBOURS.get(char.lower())
            if neighbours and draws[position] < self.rate:
                typo = neighbours[int(picks[position] * len(neighbours))]
                characters[position] = typo.upper() if char.isupper() else typo
        return "".join(characters)


@dataclass(frozen=True)
class CharacterSwaps(TextCorruption):
    """Swaps adjacent characters inside words, each position starting a swap with probability `RATES[severity]`."""

    name: ClassVar[str] = "character_swaps"
    RATES: ClassVar[tuple[float, ...]] = (0.02, 0.04, 0.07, 0.10, 0.15)

    def _corrupt(self, text, rng):
        draws = rng.random(len(text))
        characters = list(text)
        position = 0
        while position < len(characters) - 1:
            left, right = characters[position], characters[position + 1]
            if draws[position] < self.rate and not left.isspace() and not right.isspace() and left != right:
                characters[position], characters[position + 1] = right, left
                position += 2
            else:
                position += 1
        return "".join(characters)


@dataclass(frozen=True)
class WordDropout(TextCorruption):
    """Drops each whitespace-separated word with probability `RATES[severity]`.

    Words are re-joined with single spaces. A non-empty text keeps at least one word (the one with the highest
    draw), so no example becomes empty.
    """

    name: ClassVar[str] = "word_dropout"
    RATES: ClassVar[tuple[float, ...]] = (0.05, 0.10, 0.15, 0.20, 0.30)

    def _corrupt(self, text, rng):
        words = text.split()
        if not words:
            return text
        draws = rng.random(len(words))
        kept = [word for word, draw in zip(words, draws) if draw >= self.rate]
        if not kept:
            kept = [words[int(np.argmax(draws))]]
        return " ".join(kept)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (insertions, deletions and substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]
