"""Turn raw LLM output into clean candidate texts.

Small instruction-tuned models wrap what they were asked for in preambles ("Sure! Here is a new negative review:"),
numbered or bulleted lists, quotes, label annotations ("(negative)") and trailing chatter ("I hope this helps!").
`parse_generation` strips all of that and returns the candidate texts it found together with a count of the junk
lines it dropped. It never raises on odd model output: anything it cannot use is counted as junk.

The rules are heuristics tuned on the outputs of small chat models asked for one short review or sentence; they err
on the side of dropping a line (a lost candidate costs one generation, a junk candidate pollutes training data).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ParseResult", "parse_generation"]


@dataclass(frozen=True)
class ParseResult:
    """What `parse_generation` found in one model output.

    Args:
        texts (`list[str]`): Clean candidate texts, in the order they appeared.
        num_junk (`int`): Non-empty lines (or trailing sentences) that were dropped: preambles, chatter, refusals,
            bare labels, text without letters.
    """

    texts: list[str] = field(default_factory=list)
    num_junk: int = 0

    @property
    def is_empty(self) -> bool:
        """True when no usable candidate was found."""
        return not self.texts


# Special tokens that survive decoding when `skip_special_tokens` was not used.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{0,40}\|>|</?s>|<pad>|<unk>|\[(?:INST|/INST|PAD|EOS|BOS)\]")
_CODE_FENCE = re.compile(r"^\s*```\w*\s*$")
# "1. ", "2) ", "(3) ", "[4] ", "- ", "* ", "• ", "a) ", "Review 2:"-style markers are handled by the prefix rule.
_LIST_MARKER = re.compile(r"^(?:[-*•·–—+>]+|\(?\d{1,3}[.):\]]|\[\d{1,3}\]|\(?[a-zA-Z]\))\s+")
_MARKDOWN = re.compile(r"\*\*|__|^#{1,6}\s+|`")
_OPENING_QUOTES = "\"'“‘«`"
_QUOTE_PAIRS = {'"': '"', "“": "”", "‘": "’", "«": "»", "'": "'", "`": "`"}
_ALL_QUOTES = "\"'“”‘’«»`"
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])\s+")

# Words that make a short "xxx:" prefix a label rather than content ("New negative review 2:", "Output:").
_META_WORDS = (
    r"review|reviews|sentence|sentences|example|examples|text|output|answer|response|sample|tweet|comment|"
    r"snippet|version|rewrite|rewritten|paraphrase|sentiment|label|new|another|here"
)
_META_WORD = re.compile(rf"\b(?:{_META_WORDS})\b", re.IGNORECASE)
# Lines that open a reply instead of being content: an interjection that leads into the answer ("Sure! Here's
# one:", "Okay."), or a "Here is ..." that names what follows ("Here is a new negative review").
_OPENER = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|ok|absolutely|great|alright|no problem|yes|got it)\s*[!,.:]*\s*"
    r"(?:$|here\b|below\b|i\b|i'|this\b|the following\b|let\b)|"
    r"(?:here(?:'s| is| are)|below (?:is|are)|as requested|i(?:'ve| have) (?:written|created|generated|come up with)|"
    r"i (?:wrote|created|generated)|the following)\b.*\b(?:reviews?|sentences?|examples?|texts?|responses?|one|"
    r"versions?|tweets?|comments?|snippets?|paraphrases?|attempts?)\b)",
    re.IGNORECASE,
)
# Lines that talk *about* the answer; once content was seen they end the answer.
_CHATTER = re.compile(
    r"^(?:i hope|hope (?:this|that|it)|let me know|note\b|notes?:|please note|feel free|is there anything|"
    r"would you like|do you want|if you(?:'d| would) like|as an ai|this (?:review|sentence|example|text|response|"
    r"version|rewrite)\b|these (?:reviews|sentences|examples|texts)\b|the (?:above|sentiment|review|sentence)\b|"
    r"sentiment:|label:|explanation|reason(?:ing)?:|why:|in this (?:review|sentence)|"
    r"this is (?:a|an) (?:\w+ )?(?:review|sentence|example))",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|i am sorry|sorry,|i cannot|i can't|i can not|i'm unable|i am unable|as an ai|"
    r"i'm not able|i am not able|unfortunately,? i)",
    re.IGNORECASE,
)
# Chat-role names left over from a template ("assistant" on a line of its own).
_ROLE_LINE = re.compile(r"^(?:assistant|user|system|model|bot|ai)\s*:?$", re.IGNORECASE)
_DEFAULT_LABEL_WORDS = ("positive", "negative", "neutral")


def _label_words(label_names: Sequence[str] | None) -> tuple[str, ...]:
    words = {word.lower() for word in _DEFAULT_LABEL_WORDS}
    for name in label_names or ():
        words.add(str(name).strip().lower())
    return tuple(sorted(words, key=len, reverse=True))


def _strip_markup(line: str) -> str:
    line = _MARKDOWN.sub("", line).strip()
    previous = None
    while previous != line:  # "1. - foo", "> * foo"
        previous = line
        line = _LIST_MARKER.sub("", line).strip()
    return line


def _first_quoted_span(line: str, min_words: int = 2) -> str | None:
    """The first quoted span of at least `min_words` words, or None."""
    for match in re.finditer(r"\"([^\"]+)\"|“([^”]+)”|«([^»]+)»|(?:^|(?<=[\s:(]))'([^']+)'(?=$|[\s.,;:!?)])", line):
        span = next(group for group in match.groups() if group is not None).strip()
        if len(span.split()) >= min_words:
            return span
    return None


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        inner = text[1:-1].strip()
        # Only strip when the pair encloses the whole text (not `"a" and "b"`).
        if text[0] not in inner or text[0] in "'`":
            return inner
    if text and text[0] in _OPENING_QUOTES and text.count(text[0]) == 1:
        text = text[1:]
    if text and text[-1] in _ALL_QUOTES:
        closing = text[-1]
        opening = {value: key for key, value in _QUOTE_PAIRS.items()}.get(closing, closing)
        if text.count(opening) == (1 if opening == closing else 0):
            text = text[:-1]
    return text.strip()


def _strip_label_annotation(text: str, label_words: tuple[str, ...]) -> str:
    labels = "|".join(re.escape(word) for word in label_words)
    # "... (negative)", "... [Sentiment: positive]", "... - Negative", "... Label: positive"
    text = re.sub(rf"\s*[(\[]\s*(?:(?:sentiment|label|class)\s*:?\s*)?(?:{labels})\s*[)\]]\s*$", "", text, flags=re.I)
    text = re.sub(rf"\s+[-–—|]\s*(?:(?:sentiment|label|class)\s*:?\s*)?(?:{labels})\s*\.?\s*$", "", text, flags=re.I)
    text = re.sub(rf"\s*(?:sentiment|label|class)\s*:\s*(?:{labels})\s*\.?\s*$", "", text, flags=re.I)
    return text.strip()


def _split_prefix(line: str, label_words: tuple[str, ...]) -> tuple[str | None, str]:
    """Splits a short `Label words:` prefix off a line. Returns (prefix or None, rest)."""
    match = re.match(r"^([^:\"“\[(.!?]{1,60}?)\s*[:：]\s*(.*)$", line)
    if match is None:
        return None, line
    prefix, rest = match.group(1), match.group(2)
    prefix_lower = prefix.lower()
    is_meta = (
        _META_WORD.search(prefix) is not None
        or any(re.search(rf"\b{re.escape(word)}\b", prefix_lower) for word in label_words)
        or _OPENER.match(prefix) is not None
    )
    if len(prefix.split()) <= 8 and is_meta:
        return prefix, rest.strip()
    return None, line


def _mentions_label_meta(text: str, label_words: tuple[str, ...]) -> bool:
    """True for lines that talk about the task ("a new negative movie review with different wording")."""
    lower = text.lower()
    has_label = any(re.search(rf"\b{re.escape(word)}\b", lower) for word in label_words)
    has_meta = re.search(r"\b(?:reviews?|sentences?|examples?|versions?|wording|prompt|sentiment)\b", lower)
    return has_label and has_meta is not None


def _is_bare_label(text: str, label_words: tuple[str, ...]) -> bool:
    core = re.sub(r"[^\w\s]", "", text).strip().lower()
    core = re.sub(r"\b(?:sentiment|label|class|review)\b", "", core).strip()
    return core in label_words or core == ""


def _clean_line(line: str, label_words: tuple[str, ...]) -> str | None:
    """One content line → a clean candidate, or None when the line is junk."""
    line = _strip_label_annotation(_strip_markup(line), label_words)
    if not line:
        return None
    if _REFUSAL.match(line) or _CHATTER.match(line) or _ROLE_LINE.match(line):
        return None
    quoted = _first_quoted_span(line)
    prefix, rest = _split_prefix(line, label_words)
    if prefix is not None:
        if not rest:
            return None  # "Here is a new negative review:" on its own line
        line = _strip_markup(rest)
        quoted = _first_quoted_span(line)
    elif _OPENER.match(line):
        # "Here is a new negative review "it drags" for you." → the quoted span; otherwise the line is preamble.
        if quoted is None:
            return None
        line = quoted
        quoted = None
    elif line.endswith(":"):
        return None
    if quoted is not None and line.lstrip()[:1] in _OPENING_QUOTES and line.lstrip().find(quoted) <= 2:
        line = quoted  # `"Dull and slow." - a negative review` → the quoted span
    line = _strip_label_annotation(_strip_quotes(line), label_words)
    line = _strip_quotes(line)
    if not re.search(r"[^\W\d_]", line) or _is_bare_label(line, label_words):
        return None
    if _mentions_label_meta(line, label_words):
        return None
    return line


def _drop_trailing_chatter(text: str) -> tuple[str, int]:
    """Cuts sentences of chatter off the end of a candidate ("Dull. I hope this helps!"). Returns (text, dropped)."""
    sentences = _SENTENCE_SPLIT.split(text)
    for index, sentence in enumerate(sentences[1:], start=1):
        sentence = sentence.strip(_ALL_QUOTES + " ")
        if _CHATTER.match(sentence) or _REFUSAL.match(sentence) or _OPENER.match(sentence):
            return " ".join(sentences[:index]).strip(), len(sentences) - index
    return text, 0


def parse_generation(
    text: str, label_names: Sequence[str] | None = None, max_texts: int | None = None, min_words: int = 2
) -> ParseResult:
    """Extracts clean candidate texts from one raw model output.

    Every non-empty line is a potential candidate. Preamble lines ("Sure! Here's one:", "New negative review:") are
    dropped, `Label: text` prefixes, list markers, markdown, surrounding quotes and label annotations ("(negative)")
    are stripped; once a candidate has been seen, a line of chatter ("I hope this helps!", "This review is negative
    because ...") ends the answer and everything after it is junk. Refusals, bare labels and lines that talk about
    the task ("a new negative review with different wording") are junk too.

    Args:
        text (`str`): The decoded generation (prompt removed).
        label_names (`Sequence[str]`, *optional*): Class names used in the prompt; lines that are just a label, or
            that annotate one, are recognised with them ("positive", "negative" and "neutral" are always known).
        max_texts (`int`, *optional*): Stop after this many candidates; lines after it are neither parsed nor
            counted as junk.
        min_words (`int`, defaults to 2): Candidates with fewer whitespace-separated words are junk: a one-word
            reply ("In", "Great!") is a truncated or degenerate answer, not a training sentence.

    Returns:
        `ParseResult`: the candidate texts and the number of junk lines dropped.

    Example:

    ```python
    >>> parse_generation('Sure! Here is a new negative review:\\n\\n"A tedious, overlong mess."\\n\\nI hope this helps!')
    ParseResult(texts=['A tedious, overlong mess.'], num_junk=2)
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_generation expects the decoded model output as a str, got {type(text).__name__}.")
    if max_texts is not None and max_texts < 1:
        raise ValueError(f"max_texts must be >= 1 (or None for no limit), got {max_texts}.")
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}.")
    label_words = _label_words(label_names)
    lines = [line.strip() for line in _SPECIAL_TOKEN.sub("\n", text).splitlines()]
    lines = [line for line in lines if line and not _CODE_FENCE.match(line)]
    texts: list[str] = []
    num_junk = 0
    for position, line in enumerate(lines):
        if max_texts is not None and len(texts) >= max_texts:
            break
        if texts and (_CHATTER.match(_strip_markup(line)) or _REFUSAL.match(_strip_markup(line))):
            num_junk += len(lines) - position  # trailing chatter: the rest of the answer is not content
            break
        candidate = _clean_line(line, label_words)
        if candidate is None:
            num_junk += 1
            continue
        candidate, dropped = _drop_trailing_chatter(candidate)
        num_junk += dropped
        candidate = _strip_quotes(candidate)
        if not re.search(r"[^\W\d_]", candidate) or len(candidate.split()) < min_words:
            num_junk += 1
            continue
        texts.append(re.sub(r"\s+", " ", candidate))
        if dropped:
            num_junk += len(lines) - position - 1  # chatter started mid-line: drop what follows too
            break
    return ParseResult(texts=texts, num_junk=num_junk)
