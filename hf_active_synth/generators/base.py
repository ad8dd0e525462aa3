"""The generator protocol: synthesis targets in, a `datasets.Dataset` of candidates out.

A generator only *proposes* candidates. The loop then scores every candidate with the uncertainty estimator,
runs the filters, and keeps the highest-disagreement survivors per target (the discrete form of the proposal's
L_G = E_x~G[Var(y|x)]). Generators that can steer sampling with gradients (diffusion) use `request.estimator`
to do so while they sample, and sample unguided when it is `None`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

# The provenance columns are defined, typed and described in `hf_active_synth.columns`; their names stay importable
# from here.
from ..columns import (  # noqa: F401
    CYCLE_COLUMN,
    GENERATOR_COLUMN,
    LABEL_PROBABILITY_COLUMN,
    REQUIRED_PROVENANCE_COLUMNS,
    SCORE_COLUMN,
    SEED_IDS_COLUMN,
    TARGET_ID_COLUMN,
    TARGET_LABEL_COLUMN,
    TARGET_UNCERTAINTY_COLUMN,
)

if TYPE_CHECKING:
    from datasets import Dataset

    from ..uncertainty.base import UncertaintyEstimator


@dataclass(frozen=True)
class SynthesisTarget:
    """One uncertain real example the generator should produce new samples around.

    Args:
        target_id (`int`): Position of this target in `GenerationRequest.targets`; candidates point back to it.
        label (`int`): The class the new samples must keep.
        example_id (`int`): Row index of the uncertain real example in the scored pool.
        example (`Any`): That example's input (a string for text, an image or array for images).
        score (`float`): Its acquisition score (higher = more uncertain).
        num_samples (`int`): How many samples the loop will accept for this target.
        example_label (`int`, *optional*): The example's own class when it differs from `label`: a *hard negative*
            target, whose samples are drawn from a real example of another class (the class the ensemble confuses
            it with most) and must look like `label` (GeNIe). `None`: the example is of class `label`.
    """

    target_id: int
    label: int
    example_id: int
    example: Any
    score: float
    num_samples: int
    example_label: int | None = None

    @property
    def anchor_label(self) -> int:
        """The class of the real example the samples are drawn from (`example_label`, else `label`)."""
        return self.label if self.example_label is None else self.example_label

    @property
    def is_hard_negative(self) -> bool:
        """Whether the example is of another class than the samples must keep."""
        return self.example_label is not None and self.example_label != self.label


@dataclass
class GenerationRequest:
    """Everything a generator needs for one cycle.

    Args:
        targets (`list[SynthesisTarget]`): The targets, most uncertain first within each class.
        cycle (`int`): The 1-based cycle number (goes into the provenance columns).
        seed (`int`): Seed for this cycle's sampling; derive every random stream from it.
        candidates_per_sample (`int`): Candidates to propose per requested sample (over-generation factor).
        input_column (`str`): Name of the column holding inputs (text or image) in the real data.
        label_column (`str`): Name of the label column.
        label_names (`list[str]`, *optional*): Human-readable class names (prompts, class-conditional pipelines).
        seed_examples (`dict[int, list[tuple[int, Any]]]`): Every target's `(example_id, example)`, grouped by label:
            the other targets of a label, for few-shot prompting. They are the targets' examples whatever chose
            the targets (random real examples for the random baselines), so every method builds its prompts the
            same way.
        estimator (`UncertaintyEstimator`, *optional*): The fitted estimator. Generators guide sampling with its
            gradients if and only if it is given (`None`: unguided sampling, e.g. `guidance=False`); nothing else
            about the request changes with it.
    """

    targets: list[SynthesisTarget]
    cycle: int
    seed: int
    candidates_per_sample: int
    input_column: str
    label_column: str
    label_names: list[str] | None = None
    seed_examples: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    estimator: UncertaintyEstimator | None = None

    @property
    def num_candidates(self) -> int:
        """Total candidates the loop expects: Σ over targets of num_samples × candidates_per_sample."""
        return sum(target.num_samples for target in self.targets) * self.candidates_per_sample

    @property
    def hard_negative_ids(self) -> list[int]:
        """`target_id`s of the hard-negative targets (see `SynthesisTarget.is_hard_negative`), for generators that
        must refuse them (they need to start from the target's example)."""
        return [target.target_id for target in self.targets if target.is_hard_negative]


@runtime_checkable
class Generator(Protocol):
    """Proposes synthetic candidates for a cycle's targets.

    `generate` returns a `datasets.Dataset` with the request's `input_column` and `label_column`, plus the
    provenance columns in `REQUIRED_PROVENANCE_COLUMNS` (and any extra `synth_*` columns the generator wants to
    record, such as the prompt or the guidance settings). About `request.num_candidates` rows are expected; fewer
    is fine (junk dropped while parsing), zero is an error the loop reports.
    """

    name: str

    def generate(self, request: GenerationRequest) -> Dataset: ...
