"""Text filters: length bounds, near-duplicate candidates, near-copies of real training texts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from datasets import Dataset

from hf_active_synth.filters.base import Filter, FilterContext
from hf_active_synth.filters.text import (
    MAX_REAL_OVERLAP_COLUMN,
    LengthFilter,
    NearDuplicateFilter,
    RealNearCopyFilter,
    shingles,
    text_overlap,
)

REAL = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales .",
    "a sometimes tedious film .",
]


def context(real_texts=REAL) -> FilterContext:
    real = Dataset.from_dict({"text": list(real_texts), "label": [index % 2 for index in range(len(real_texts))]})
    return FilterContext(input_column="text", label_column="label", real_dataset=real, num_labels=2)


def candidates(texts, scores=None) -> Dataset:
    data = {"text": list(texts), "label": [0] * len(texts)}
    if scores is not None:
        data["synth_score"] = list(scores)
    return Dataset.from_dict(data)


@pytest.mark.parametrize("text_filter", [LengthFilter(), NearDuplicateFilter(), RealNearCopyFilter()])
def test_filters_follow_the_protocol_and_accept_empty_input(text_filter):
    assert isinstance(text_filter, Filter)
    empty = Dataset.from_dict({"text": [], "label": []})
    assert len(text_filter(empty, context())) == 0


def test_shingles_ignore_case_punctuation_and_tokenisation():
    assert shingles("It's a charming film!") == shingles("it 's a charming film .")
    assert shingles("ab", n=5) == {"ab"}
    assert shingles("?!", n=5) == set()
    assert shingles("one two three four", n=2, unit="word") == {"one two", "two three", "three four"}
    assert text_overlap("a b c", "a b c") == 1.0
    assert text_overlap("", "anything") == 0.0
    with pytest.raises(ValueError, match="unit"):
        shingles("x", unit="byte")  # type: ignore[arg-type]


def test_length_filter_bounds():
    texts = ["too short", "just the right length here", "one two three four five six seven"]
    kept = LengthFilter(min_words=3, max_words=6)(candidates(texts), context())
    assert kept["text"] == ["just the right length here"]
    assert LengthFilter(min_words=0, max_words=None)(candidates(texts), context())["text"] == texts
    with pytest.raises(ValueError, match="min_words"):
        LengthFilter(min_words=5, max_words=2)


def test_near_duplicate_filter_drops_the_planted_pair_member_with_lower_score():
    texts = [
        "The plot drags and the jokes fall flat.",  # planted pair, lower score
        "A warm, funny film with a sharp script.",
        "the plot drags , and the jokes fall flat",  # same after normalisation, higher score
        "Nothing about this sequel feels necessary.",
    ]
    kept = NearDuplicateFilter(threshold=0.7)(candidates(texts, scores=[0.1, 0.5, 0.9, 0.3]), context())
    assert kept["text"] == [texts[1], texts[2], texts[3]]
    # Without scores, the earlier row wins.
    kept = NearDuplicateFilter(threshold=0.7)(candidates(texts), context())
    assert kept["text"] == [texts[0], texts[1], texts[3]]


def test_near_duplicate_filter_catches_a_one_word_edit_but_keeps_paraphrases():
    texts = [
        "The cast is wasted on a lazy, predictable script.",
        "The cast is wasted on a lazy, predictable screenplay.",  # one word changed
        "Talented actors cannot rescue this lazy story.",  # same meaning, different words
    ]
    kept = NearDuplicateFilter(threshold=0.6)(candidates(texts), context())
    assert kept["text"] == [texts[0], texts[2]]


def test_near_duplicate_filter_also_checks_samples_accepted_in_earlier_cycles():
    import dataclasses

    if "accepted_dataset" not in {field.name for field in dataclasses.fields(FilterContext)}:
        pytest.skip("FilterContext has no accepted_dataset field in this version")
    accepted = Dataset.from_dict({"text": ["The plot drags and the jokes fall flat."], "label": [0]})
    ctx = dataclasses.replace(context(), accepted_dataset=accepted)
    texts = ["the plot drags, and the jokes fall flat!", "A warm, funny film with a sharp script."]
    assert NearDuplicateFilter()(candidates(texts), ctx)["text"] == [texts[1]]
    empty = dataclasses.replace(context(), accepted_dataset=accepted.select([]))
    assert NearDuplicateFilter()(candidates(texts), empty)["text"] == texts


def test_real_near_copy_filter_drops_planted_copies_and_records_overlap():
    texts = [
        "It's a charming and often affecting journey.",  # near-copy of REAL[0]
        "unflinchingly bleak and desperate",  # exact copy of REAL[1]
        "A charming little film that earns its tears.",  # shares a word, not a copy
        "bleak",  # a piece of a real text: fully contained
        "The soundtrack is the only thing worth remembering.",
    ]
    text_filter = RealNearCopyFilter(max_overlap=0.8)
    kept = text_filter(candidates(texts), context())
    assert kept["text"] == [texts[2], texts[4]]
    assert MAX_REAL_OVERLAP_COLUMN in kept.column_names
    assert all(0.0 <= value < 0.8 for value in kept[MAX_REAL_OVERLAP_COLUMN])
    overlaps = text_filter.max_real_overlap(texts, context())
    assert overlaps[0] == pytest.approx(1.0) and overlaps[1] == pytest.approx(1.0) and overlaps[3] == 1.0
    assert overlaps[2] < 0.5
    assert overlaps[2] == pytest.approx(max(text_overlap(texts[2], real, metric="containment") for real in REAL))


def test_real_near_copy_filter_jaccard_metric_matches_pairwise_reference():
    texts = ["a sometimes tedious film about nothing", "charming and affecting", "bleak and desperate days"]
    text_filter = RealNearCopyFilter(metric="jaccard", unit="word", n=2)
    expected = [max(text_overlap(t, r, n=2, unit="word", metric="jaccard") for r in REAL) for t in texts]
    np.testing.assert_allclose(text_filter.max_real_overlap(texts, context()), expected)


def test_real_index_is_cached_per_real_dataset():
    text_filter = RealNearCopyFilter()
    ctx = context()
    text_filter(candidates(["some new sentence here"]), ctx)
    first = text_filter.real_index_[1]
    text_filter(candidates(["another new sentence"]), ctx)
    assert text_filter.real_index_[1] is first
    text_filter(candidates(["another new sentence"]), context(REAL[:2]))
    assert text_filter.real_index_[1] is not first
    assert len(text_filter.real_index_[1]) == 2


def test_real_near_copy_filter_scales_to_ten_thousand_real_texts():
    rng = np.random.default_rng(0)
    vocabulary = np.array([f"w{i}" for i in range(2000)])
    real = [" ".join(rng.choice(vocabulary, size=12)) for _ in range(10_000)]
    texts = [" ".join(rng.choice(vocabulary, size=12)) for _ in range(300)] + [real[1234]]
    started = time.perf_counter()
    kept = RealNearCopyFilter()(candidates(texts), context(real))
    elapsed = time.perf_counter() - started
    assert len(kept) == 300 and real[1234] not in kept["text"]
    assert elapsed < 15  # ~1 s on a free core; generous for shared CI machines


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateFilter(threshold=0)
    with pytest.raises(ValueError, match="max_overlap"):
        RealNearCopyFilter(max_overlap=1.5)
    with pytest.raises(ValueError, match="metric"):
        RealNearCopyFilter(metric="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not found"):
        LengthFilter()(Dataset.from_dict({"sentence": ["a b c"]}), context())
