"""The prompts of `TextGenerationGenerator`: templates, few-shot seed examples, and one prompt per candidate.

Two styles (`PromptTemplates.style`): `"few_shot"` (the default) asks for a new text like a handful of examples;
`"edit"` anchors each candidate on its target alone, asking for a close rewrite of that one text whose label is
unmistakable (the text counterpart of SDEdit from the target image). In the few-shot style every prompt is few-shot: it shows the target's real example plus a few seeded draws from the other targets' examples
of its label (`request.seed_examples`), whatever chose the targets (uncertainty, or chance for the random baselines).
Only a target with no example to show (and no other examples of its label) gets the zero-shot prompt, which names the
label alone. Every draw is seeded by (request seed, cycle, target, candidate index), so prompts do not depend on
batching.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .base import GenerationRequest, SynthesisTarget

__all__ = ["PromptJob", "PromptTemplates", "PromptWriter", "seed_entry", "seed_similarity"]

_PLACEHOLDERS = frozenset({"label", "domain", "examples", "num_examples"})
_EDIT_PLACEHOLDERS = frozenset({"label", "domain", "text"})

PromptStyle = Literal["few_shot", "edit"]


@dataclass
class PromptTemplates:
    """The prompts `TextGenerationGenerator` writes, as `str.format` templates.

    Placeholders: `{label}` (the label's name or description), `{domain}` (what kind of text, e.g. "movie review"),
    `{examples}` (the seed examples, each rendered with `example` and joined by newlines) and `{num_examples}`.

    Args:
        few_shot (`str`): User prompt when there are examples to show (every target with an example); should show
            `{examples}` and ask for one new text of `{label}` close to them.
        zero_shot (`str`): User prompt when a target has no example to show (and its label no other seed
            examples); must not use `{examples}`.
        example (`str`, defaults to `'- "{text}"'`): How one seed example is rendered (placeholder `{text}`).
        system (`str`, *optional*): System message for chat models (and the first paragraph of plain prompts).
            `None` keeps the model's own default system prompt.
        response_prefix (`str`, defaults to `""`): Appended after the generation prompt, so the model continues it
            (e.g. `'"'` or `"Review:"` for base models without a chat template).
        domain (`str`, defaults to `"text"`): Fills `{domain}`: what kind of text the data is ("movie review",
            "news headline", ...). The default names no domain, so that no data set is described as another.
        edit (`str`): User prompt of the `"edit"` style: placeholders `{text}` (the target's own example),
            `{label}` and `{domain}`; should ask for a close rewrite of `{text}` that is unmistakably `{label}`.
        style (`str`, defaults to `"few_shot"`): `"few_shot"` shows several examples of the label and asks for a new
            one; `"edit"` shows the target's own example alone and asks for a minimal, label-clarifying rewrite (a
            target without an example falls back to the few-shot prompts). The random baselines get the same style
            from their random real examples.
    """

    few_shot: str = (
        "Here are {label} {domain}s that are subtle and easy to misread:\n{examples}\n"
        "Write one new {label} {domain} similar to these. Reply with the {domain} only."
    )
    zero_shot: str = "Write one new {label} {domain}. Reply with the {domain} only."
    example: str = '- "{text}"'
    system: str | None = None
    response_prefix: str = ""
    domain: str = "text"
    edit: str = (
        'Here is a {domain}:\n"{text}"\nRewrite it, keeping most of its words, so that it is unmistakably {label}. '
        "Reply with the rewritten {domain} only."
    )
    style: PromptStyle = "few_shot"

    def __post_init__(self):
        if self.style not in ("few_shot", "edit"):
            raise ValueError(f"PromptTemplates.style must be 'few_shot' or 'edit', got {self.style!r}.")
        if not {"text", "label"} <= _fields(self.edit) <= _EDIT_PLACEHOLDERS:
            raise ValueError(
                f"PromptTemplates.edit must use {{text}} and {{label}} and may use {{domain}}; got the placeholders "
                f"{sorted(_fields(self.edit))}."
            )
        for name in ("few_shot", "zero_shot", "system"):
            template = getattr(self, name)
            if template is None:
                continue
            unknown = _fields(template) - _PLACEHOLDERS
            if unknown:
                raise ValueError(
                    f"PromptTemplates.{name} uses unknown placeholder(s) {sorted(unknown)}; the allowed ones are "
                    f"{sorted(_PLACEHOLDERS)}. Escape literal braces as '{{{{' and '}}}}'."
                )
        if "examples" in _fields(self.zero_shot):
            raise ValueError(
                "PromptTemplates.zero_shot must not use {examples}: it is the prompt for targets with no example to "
                "show."
            )
        if _fields(self.example) != {"text"}:
            raise ValueError("PromptTemplates.example must use exactly the placeholder {text}, e.g. '- \"{text}\"'.")

    def render_edit(self, label: str, text: str) -> str:
        """The `"edit"`-style user prompt: a close rewrite of `text` that is unmistakably `label`."""
        return self.edit.format(label=label, domain=self.domain, text=text)

    def render(self, label: str, examples: Sequence[str]) -> str:
        """The user prompt for one candidate: `few_shot` showing `examples`, or `zero_shot` when there are none."""
        rendered_examples = "\n".join(self.example.format(text=text) for text in examples)
        template = self.few_shot if examples else self.zero_shot
        return template.format(label=label, domain=self.domain, examples=rendered_examples, num_examples=len(examples))


def _fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"Invalid prompt template {template!r}: {error}.") from error


@dataclass
class PromptJob:
    """One candidate to sample: its target, its full prompt, the seed examples (ids and texts) the prompt shows, and
    the same prompt as chat messages (what a chat-completion endpoint is sent)."""

    target: SynthesisTarget
    prompt: str
    seed_ids: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PromptWriter:
    """Writes the prompt of every candidate of a request.

    Args:
        templates (`PromptTemplates`): The prompt templates.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): Applies the chat template. `None` (an endpoint applies
            its own) writes plain prompts, and every job carries its chat `messages` too.
        label_descriptions (`Sequence[str]`, *optional*): What to call each class; defaults to `request.label_names`.
        num_shots (`int`): Seed examples per prompt (the target's own example included).
        max_example_chars (`int`): Seed examples are cut to this many characters.
        use_chat_template (`bool`, *optional*): `None`: use the chat template when the tokenizer has one.
    """

    templates: PromptTemplates
    tokenizer: Any
    label_descriptions: Sequence[str] | None
    num_shots: int
    max_example_chars: int
    use_chat_template: bool | None = None

    def label_name(self, label: int, request: GenerationRequest) -> str:
        """The name of class `label` in prompts."""
        names = self.label_descriptions if self.label_descriptions is not None else request.label_names
        if names is None:
            raise ValueError(
                "TextGenerationGenerator needs class names for its prompts: set request.label_names (the loop takes "
                "them from the label column's ClassLabel) or pass label_descriptions=[...]."
            )
        if not 0 <= label < len(names):
            raise ValueError(f"Target label {label} has no name: label names are {list(names)}.")
        return str(names[label])

    def format(self, user_prompt: str) -> str:
        """The full prompt: the chat template (or a plain system paragraph) around `user_prompt`, then the
        response prefix."""
        templates, tokenizer = self.templates, self.tokenizer
        use_chat = self.use_chat_template
        has_template = getattr(tokenizer, "chat_template", None) is not None
        if use_chat is None:
            use_chat = has_template
        elif use_chat and not has_template:
            raise ValueError("use_chat_template=True but the tokenizer has no chat template; pass False or None.")
        if use_chat:
            prompt = tokenizer.apply_chat_template(
                self.messages(user_prompt), tokenize=False, add_generation_prompt=True
            )
        else:
            prompt = f"{templates.system}\n\n{user_prompt}\n" if templates.system else f"{user_prompt}\n"
        return prompt + templates.response_prefix

    def messages(self, user_prompt: str) -> list[dict[str, str]]:
        """`user_prompt` as chat messages: the template's system message (if any), then the user turn."""
        messages = [{"role": "user", "content": user_prompt}]
        if self.templates.system is not None:
            messages.insert(0, {"role": "system", "content": self.templates.system})
        return messages

    def shots(self, target: SynthesisTarget, request: GenerationRequest, index: int) -> tuple[list[str], list[int]]:
        """Seed examples for candidate `index` of `target`: drawn extras first, the target's own example last.

        A target whose example is `None` or blank shows `num_shots` drawn extras only; with none to draw either, the
        list is empty and the prompt is zero-shot.
        """
        if target.example is not None and not isinstance(target.example, str):
            raise TypeError(
                f"TextGenerationGenerator needs text targets; target {target.target_id} has an example of type "
                f"{type(target.example).__name__}."
            )
        own = (target.example or "").strip()
        pool = [
            (seed_id, text)
            for seed_id, text in (seed_entry(entry) for entry in request.seed_examples.get(target.label, []))
            if text.strip() != own
        ]
        extra = min(self.num_shots - (1 if own else 0), len(pool))
        rng = np.random.default_rng([request.seed, request.cycle, target.target_id, index])
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=extra, replace=False))] if extra else []
        if own:
            chosen.append((target.example_id, target.example))
        texts = [text.strip()[: self.max_example_chars] for _, text in chosen]
        return texts, [seed_id for seed_id, _ in chosen if seed_id is not None]

    def jobs(self, request: GenerationRequest) -> list[PromptJob]:
        """One job per candidate: `target.num_samples * request.candidates_per_sample` per target, in order."""
        jobs = []
        hard_negatives = request.hard_negative_ids
        if hard_negatives and self.templates.style != "edit":
            # A few-shot prompt would show the other class's text as an example of this one.
            raise ValueError(
                f"Targets {hard_negatives[:5]} are hard negatives (a text of another class to rewrite into this "
                "one), which only the 'edit' prompt style can ask for: use PromptTemplates(style='edit') (the text "
                "recipe's --prompt_style edit) or hard_negative_share=0."
            )
        for target in request.targets:
            label_name = self.label_name(target.label, request)
            own = (target.example or "").strip() if isinstance(target.example, str) else ""
            for index in range(target.num_samples * request.candidates_per_sample):
                if self.templates.style == "edit" and own:
                    # The target alone: the copy check then compares each rewrite with the text it rewrites.
                    examples = [own[: self.max_example_chars]]
                    seed_ids = [target.example_id] if target.example_id is not None else []
                    user_prompt = self.templates.render_edit(label_name, examples[0])
                else:
                    examples, seed_ids = self.shots(target, request, index)
                    user_prompt = self.templates.render(label_name, examples)
                jobs.append(
                    PromptJob(
                        target=target,
                        prompt=self.format(user_prompt),
                        seed_ids=seed_ids,
                        examples=examples,
                        messages=self.messages(user_prompt),
                    )
                )
        return jobs


def seed_entry(entry: Any) -> tuple[int | None, str]:
    """A seed example as (id or None, text): accepts str, (id, text) pairs and SynthesisTarget-like objects."""
    if isinstance(entry, str):
        return None, entry
    if isinstance(entry, SynthesisTarget) or (hasattr(entry, "example_id") and hasattr(entry, "example")):
        seed_id, text = entry.example_id, entry.example
    elif isinstance(entry, (tuple, list)) and len(entry) == 2:
        seed_id, text = entry
    else:
        raise TypeError(
            "request.seed_examples values must be lists of str, (example_id, text) pairs or SynthesisTargets; "
            f"got an entry of type {type(entry).__name__}."
        )
    if not isinstance(text, str):
        raise TypeError(f"Seed example {seed_id} is a {type(text).__name__}; the text generator needs str inputs.")
    return int(seed_id), text


def _normalized(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def seed_similarity(candidate: str, examples: Sequence[str]) -> float:
    """The highest `difflib` similarity ratio (0-1) between `candidate` and any of the seed `examples`, compared as
    lower-cased words (punctuation and spacing ignored, so "a tired, predictable sequel..." matches
    "a tired , predictable sequel" exactly). 0 when there are no examples."""
    normalized = _normalized(candidate)
    return max(
        (difflib.SequenceMatcher(None, normalized, _normalized(example)).ratio() for example in examples),
        default=0.0,
    )
