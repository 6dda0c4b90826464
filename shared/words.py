"""Word normalisation before the lexicon look-up: case, apostrophes, contractions and numbers as words.

The language model sees a word only through its lexicon vectors (:mod:`shared.lexicon`), and the lexicons list
plain lower-case words. Speech recognisers do not write that way: Whisper writes numbers as digits ("10",
"4", "1,000", "3rd", "50%") and keeps contractions ("don't", "I'm") and capitals, so those words matched
nothing and repeated the previous word's vector instead. :func:`normalize` turns one recognised item into
the lexicon's words: lower case, curly apostrophes straightened, contractions expanded ("don't" -> "do not",
"can't" -> "can not", "I'm" -> "i am"), numbers spelled out ("10" -> "ten", "1,000" -> "one thousand",
"3.5" -> "three point five", "3rd" -> "third", "50%" -> "fifty percent"). A possessive "'s" stays (the
lexicon drops it itself); "it's", "that's" and the like, which are almost always "it is", are expanded.
"""

from __future__ import annotations

import re

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}

# Whole-word contractions whose expansion is not a regular suffix rule.
_IRREGULAR = {"can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not",
              "ain't": "is not", "let's": "let us", "y'all": "you all", "'cause": "because", "o'clock": "o'clock"}
# Pronouns and demonstratives whose "'s" is "is" (or "has"), not a possessive.
_S_IS = frozenset({"it", "that", "what", "there", "here", "he", "she", "who", "where", "how", "when", "this"})
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"), ("'d", " would"), ("'m", " am"))

# A number as a recogniser writes it: 10, 1,000, 3.5, 21st, 50%, $5 (the currency sign is dropped).
_NUMBER = re.compile(r"^[$£€]?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th|%)?$")
_ITEM = re.compile(r"[$£€]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:st|nd|rd|th|%)?|[a-z]+(?:'[a-z]+)*|'cause")


def number_words(value: int) -> list[str]:
    """A non-negative integer in English words: 1234 -> one thousand two hundred thirty four."""
    if value < 0:
        raise ValueError(f"number_words takes non-negative integers, got {value}")
    if value < 20:
        return [_ONES[value]]
    if value < 100:
        tens, ones = divmod(value, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    for scale, name in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            return number_words(high) + [name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return [*words[:-1], last]


def _number(token: str) -> list[str] | None:
    match = _NUMBER.match(token)
    if match is None:
        return None
    whole, fraction, suffix = match.groups()
    words = number_words(int(whole.replace(",", "")))
    if fraction:
        words += ["point", *(_ONES[int(d)] for d in fraction[1:])]
    if suffix == "%":
        words.append("percent")
    elif suffix:
        words = _ordinal(words)
    return words


def _expand(token: str) -> list[str]:
    if token in _IRREGULAR:
        return _IRREGULAR[token].split()
    if token.endswith("'s") and token[:-2] in _S_IS:
        return [token[:-2], "is"]
    for suffix, expansion in _SUFFIXES:
        if token.endswith(suffix) and len(token) > len(suffix):
            return [token[: -len(suffix)], *expansion.split()]
    return [token]


def normalize(text: str) -> list[str]:
    """The lexicon words of one recognised item or phrase (lower case, contractions and numbers expanded)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    words: list[str] = []
    for item in _ITEM.findall(text):
        spelled = _number(item)
        words.extend(spelled if spelled is not None else _expand(item))
    return words
