"""Parsing raw LLM output into clean candidate texts."""

from __future__ import annotations

import pytest

from hf_active_synth.generators.parsing import ParseResult, parse_generation

LABELS = ["negative", "positive"]

# (raw model output, expected texts, expected junk count)
CASES = [
    ("A tedious, overlong mess.", ["A tedious, overlong mess."], 0),
    ("", [], 0),
    ("   \n\n  ", [], 0),
    ("<|im_end|>", [], 0),
    (
        'Sure! Here is a new negative review:\n\n"A tedious, overlong mess."\n\nI hope this helps!',
        ["A tedious, overlong mess."],
        2,
    ),
    (
        "Here's a new negative movie review: The plot drags and the jokes fall flat.",
        ["The plot drags and the jokes fall flat."],
        0,
    ),
    ("Here is a new negative review:", [], 1),
    ('One new negative movie review can be:\n\n- "The ending feels unearned."', ["The ending feels unearned."], 1),
    (
        "1. A warm, funny film.\n2. Sharp writing and a great cast.\n3) Worth every minute.",
        ["A warm, funny film.", "Sharp writing and a great cast.", "Worth every minute."],
        0,
    ),
    (
        "- Bland and forgettable.\n* Nothing works here.\n• A slog.",
        ["Bland and forgettable.", "Nothing works here.", "A slog."],
        0,
    ),
    ("“Beautifully shot but hollow.”", ["Beautifully shot but hollow."], 0),
    ("'quietly devastating and honest'", ["quietly devastating and honest"], 0),
    ('"Dull and slow." - a negative review', ["Dull and slow."], 0),
    ("Review: the cast is wasted on a lazy script", ["the cast is wasted on a lazy script"], 0),
    ("New positive review 2: a joyful surprise from start to finish", ["a joyful surprise from start to finish"], 0),
    ("**Negative review:** A film that mistakes noise for energy.", ["A film that mistakes noise for energy."], 0),
    ("A film that mistakes noise for energy. (negative)", ["A film that mistakes noise for energy."], 0),
    ("A film that mistakes noise for energy. [Sentiment: negative]", ["A film that mistakes noise for energy."], 0),
    ("A film that mistakes noise for energy. Label: negative", ["A film that mistakes noise for energy."], 0),
    ("The acting is wooden. I hope this helps!", ["The acting is wooden."], 1),
    (
        "The acting is wooden.\nThis review is negative because it criticises the acting.\nLet me know!",
        ["The acting is wooden."],
        2,
    ),
    ("Negative", [], 1),
    ("Positive.", [], 1),
    ("Sentiment: positive", [], 1),
    ("12345 !!! ...", [], 1),
    ("I'm sorry, but I can't help with that.", [], 1),
    ("As an AI language model, I cannot write reviews.", [], 1),
    ("```\nThe movie is a triumph.\n```", ["The movie is a triumph."], 0),
    (
        "These sentences aim to convey the same message, but they present a different perspective.",
        [],
        1,
    ),
    (
        "The film's dark and depressing, so it's hard to choose between the positive and negative versions.",
        [],
        1,
    ),
    ("Write a new negative movie review with different wording:", [], 1),
    ('Here is a new negative review "it never comes alive" for you.', ["it never comes alive"], 0),
    # Real content that looks a bit like a preamble must survive.
    ("Great acting and a sharp script.", ["Great acting and a sharp script."], 0),
    ("Here is a film that forgets to be funny.", ["Here is a film that forgets to be funny."], 0),
    ("Okay, the movie was fine but forgettable.", ["Okay, the movie was fine but forgettable."], 0),
    ("If you love heist films, you will love this one.", ["If you love heist films, you will love this one."], 0),
    ("the result : a mess", ["the result : a mess"], 0),
    ("it 's a charming and often affecting journey . ", ["it 's a charming and often affecting journey ."], 0),
    ('He said "no" and left; the film never recovers.', ['He said "no" and left; the film never recovers.'], 0),
    ("It's the director's best work.", ["It's the director's best work."], 0),
    ("Sure.\n\nOkay!", [], 2),
    (
        "A movie with a charming tone, but that's not what you expect. Here's a revised review to be",
        ["A movie with a charming tone, but that's not what you expect."],
        1,
    ),
    # Outputs seen from SmolLM2-135M-Instruct.
    (
        'Here\'s a new negative movie review:\n- "not a great movie"\n- "awful movie"',
        ["not a great movie", "awful movie"],
        1,
    ),
    (
        "What a perceptive AI, no doubt about it! While I could expand on those negative movie reviews with more "
        "detail, I've created a new negative movie review with varying wording to illustrate the difference.",
        [],
        1,
    ),
    (
        "Your review has been carefully crafted to be both positive and negative. To add a bit of flair to your "
        "review, I'd suggest a few more words. Here's your new negative movie review:\n",
        [],
        1,
    ),
    ("<|im_start|>assistant\nA gentle, moving story.<|im_end|>", ["A gentle, moving story."], 1),
]


@pytest.mark.parametrize(("raw", "texts", "num_junk"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_parse_generation_cases(raw, texts, num_junk):
    result = parse_generation(raw, label_names=LABELS)
    assert result.texts == texts
    assert result.num_junk == num_junk
    assert result.is_empty == (not texts)


def test_max_texts_stops_early_without_counting_the_rest_as_junk():
    raw = "1. One good film.\n2. Another good film.\n3. A third good film."
    assert parse_generation(raw, max_texts=1) == ParseResult(texts=["One good film."], num_junk=0)
    with pytest.raises(ValueError, match="max_texts"):
        parse_generation(raw, max_texts=0)


def test_custom_label_names_are_recognised():
    result = parse_generation("Sports\nThe match went to penalties. (sports)", label_names=["sports", "politics"])
    assert result.texts == ["The match went to penalties."]
    assert result.num_junk == 1


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="str"):
        parse_generation(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    ['"', "''", "“", "- ", "1.", "(", ":", "***", "\x00\x01", "Review:", '"unbalanced', "a" * 5000, "😀 😀"],
)
def test_odd_outputs_never_crash(raw):
    result = parse_generation(raw)
    assert all(text.strip() for text in result.texts)
    assert result.num_junk >= 0


def test_one_word_answers_are_junk_and_the_next_line_is_used():
    assert parse_generation("In") == ParseResult(texts=[], num_junk=1)
    assert parse_generation("Great!\nA warm, funny film.", max_texts=1) == ParseResult(
        texts=["A warm, funny film."], num_junk=1
    )
    assert parse_generation("Dreadful.", min_words=1).texts == ["Dreadful."]
    with pytest.raises(ValueError, match="min_words"):
        parse_generation("x", min_words=0)
