"""Deep ensembles: K independently initialised and seeded models (Lakshminarayanan et al., 2017).

Scoring runs the K members either one after the other (the loop) or, when they share one architecture, as one
vectorised forward (`stack_members`): their parameters and buffers are stacked along a new leading axis
(`[K, ...]`) and `torch.vmap` maps `torch.func.functional_call` of one member over that axis, so every layer runs
once for all members (a convolution over an unbatched input becomes one convolution with K times the output
channels, the later ones grouped convolutions) instead of K small forwards with their Python overhead. The logits
are the loop's to float rounding (max |diff| about 1e-7 on the digits ResNet), and stay differentiable w.r.t. the
inputs.

Why not always: side-by-side timings (1 thread, K = 5, interleaved rounds, median of the per-round loop/stacked time
ratios, on a loaded 2-core machine) measured on the digits ResNet (`tasks.digits.make_digits_classifier("resnet")`,
20k parameters, the image recipe's default) stacked speedups of about 1.1x at the recipe's scoring batch of 256,
1.4x at batch 64 and 1.6x for forward + backward w.r.t. a batch of 30 inputs (what diffusion guidance does per
step); on a 1.2M-parameter ResNet on 32x32 RGB inputs about 0.95x (batch 64) and 1.0-1.1x (forward + backward); on
the digits ConvNeXt about 0.2x at batch 256 and 0.9x for forward + backward (its depthwise 7x7 convolutions vectorise
badly). So by default stacking is used only where it was measured faster, `STACKED_BY_DEFAULT`;
`stack_members=True` turns it on for any members it applies to.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call

from ..modeling import default_model_init, extract_logits
from .base import BatchedEstimator, forward_logits, model_inputs, qualified_class_name

if TYPE_CHECKING:
    from .context import FitContext

__all__ = ["STACKED_BY_DEFAULT", "DeepEnsemble", "StackedMembers", "stacking_blocker"]

logger = logging.getLogger(__name__)

STACKED_BY_DEFAULT: dict[str, int] = {
    # Measured faster stacked than looped at 20k parameters, about even at 1.2M (see the module docstring).
    "transformers.models.resnet.modeling_resnet.ResNetForImageClassification": 100_000,
}
"""Member classes (fully qualified names) that `DeepEnsemble(stack_members=None)` scores stacked when it can, each
with the most parameters per member it does so for."""


def _size_blocker(member: nn.Module) -> str | None:
    """Why `stack_members=None` loops over members like `member` (of a `STACKED_BY_DEFAULT` class), or `None`."""
    limit = STACKED_BY_DEFAULT[qualified_class_name(member)]
    size = sum(parameter.numel() for parameter in member.parameters())
    if size > limit:
        return f"{type(member).__name__} members have {size} parameters, over the {limit} of STACKED_BY_DEFAULT"
    return None


def stacking_blocker(members: Sequence[nn.Module]) -> str | None:
    """Why `members` cannot be scored by one vectorised forward, or `None` when they can.

    They can when every member has member 0's class, module tree (`repr`: layer types, sizes, strides, eps, ...) and
    config, the same parameter and buffer names, shapes, dtypes and devices (dense tensors only), every module is
    in eval mode (train-mode dropout draws random numbers and train-mode BatchNorm normalises with batch statistics
    and updates its running statistics in place, neither of which the stacked forward does per member), and no
    module has forward hooks (the stacked forward would skip them).

    Args:
        members (`Sequence[nn.Module]`): The ensemble's members.
    """
    if len(members) < 2:
        return f"stacking needs at least 2 members, got {len(members)}"
    return _mode_blocker([list(member.modules()) for member in members]) or _structure_blocker(members)


def _structure_blocker(members: Sequence[nn.Module]) -> str | None:
    """The part of `stacking_blocker` that only changes with the members' modules and tensors."""
    first = members[0]
    first_config = getattr(first, "config", None)
    first_tensors = [(name, t.shape, t.dtype, t.device, t.layout) for name, t in _named_tensors(first)]
    if any(layout != torch.strided for *_, layout in first_tensors):
        return "member 0 has sparse or other non-dense parameters or buffers"
    first_repr = repr(first)
    for index, member in enumerate(members[1:], start=1):
        if type(member) is not type(first):
            return f"member {index} is a {type(member).__name__}, member 0 a {type(first).__name__}"
        if repr(member) != first_repr:
            return f"member {index}'s modules differ from member 0's"
        config = getattr(member, "config", None)
        if config is not first_config and not _same_config(config, first_config):
            return f"member {index}'s config differs from member 0's"
        tensors = [(name, t.shape, t.dtype, t.device, t.layout) for name, t in _named_tensors(member)]
        if tensors != first_tensors:
            return f"member {index}'s parameters or buffers differ from member 0's in names, shapes, dtypes or devices"
    return None


def _same_config(config: Any, other: Any) -> bool:
    """Whether two members' configs (transformers `PretrainedConfig`s, or anything else) say the same."""
    if hasattr(config, "to_dict") and hasattr(other, "to_dict"):
        return config.to_dict() == other.to_dict()
    return config == other


def _mode_blocker(modules: Sequence[Sequence[nn.Module]]) -> str | None:
    """The part of `stacking_blocker` that can change between two calls with nothing else changing (modes, hooks).

    Args:
        modules (`Sequence[Sequence[nn.Module]]`): Every member's modules (`list(member.modules())`, cached by the
            caller: walking the module trees costs more than this check).
    """
    for index, member_modules in enumerate(modules):
        for module in member_modules:
            if module.training:
                return f"member {index}'s {type(module).__name__} is in training mode"
            if module._forward_hooks or module._forward_pre_hooks:
                return f"member {index}'s {type(module).__name__} has forward hooks"
    return None


def _named_tensors(member: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*member.named_parameters(), *member.named_buffers()]


class _MembersSnapshot:
    """What a stacking decision was made for: the members, their modules, their tensors' storage and versions."""

    def __init__(self, members: Sequence[nn.Module]):
        self.members = tuple(members)
        self.modules = [list(member.modules()) for member in members]
        self.tensors = [t for member in members for t in (*member.parameters(), *member.buffers())]
        self.stamp = self._stamp()

    def _stamp(self) -> list[tuple[int, int]]:
        # `.to()` and `param.data = ...` change the storage; in-place writes (optimizer steps, `load_state_dict`)
        # bump the version counter.
        return [(t.data_ptr(), t._version) for t in self.tensors]

    def matches(self, members: Sequence[nn.Module]) -> bool:
        """Whether `members` are these members with these tensors, unchanged (modules added since are not seen)."""
        return (
            len(members) == len(self.members)
            and all(a is b for a, b in zip(members, self.members))
            and self._stamp() == self.stamp
        )


class _StackState:
    """One member selection's stacking decision: its snapshot, why it cannot be stacked, and its stacked weights."""

    def __init__(self, members: Sequence[nn.Module]):
        self.snapshot = _MembersSnapshot(members)
        self.structure_reason = _structure_blocker(members) if len(members) > 1 else "fewer than 2 members"
        listed = qualified_class_name(members[0]) in STACKED_BY_DEFAULT
        self.size_reason = _size_blocker(members[0]) if listed else None
        self.stacked: StackedMembers | None = None


class StackedMembers:
    """K same-architecture members scored by one `torch.vmap`-ed `functional_call` over their stacked weights.

    The stacked tensors are detached copies taken when the object is built (gradients flow to the inputs only, not
    to the members' weights); the forward runs member 0's structure, in eval mode.

    Args:
        members (`Sequence[nn.Module]`): The members, all passing `stacking_blocker`.
    """

    def __init__(self, members: Sequence[nn.Module]):
        per_member = [dict(_named_tensors(member)) for member in members]
        with torch.no_grad():
            self.tensors = {name: torch.stack([tensors[name] for tensors in per_member]) for name in per_member[0]}
        # The module the stacked tensors are swapped into: member 0's structure, without weights of its own.
        self.skeleton = copy.deepcopy(members[0]).to("meta").eval()

    def __call__(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Every member's logits for one batch, shaped `[B, C, K]`."""
        kwargs = model_inputs(inputs)

        def member_logits(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
            return extract_logits(functional_call(self.skeleton, tensors, (), kwargs))

        # The inputs are closed over, so they are the same (unbatched) for every member.
        return torch.vmap(member_logits, randomness="error")(self.tensors).movedim(0, -1)


class DeepEnsemble(BatchedEstimator):
    """K members, each built fresh under its own seed and trained on the trainer's current data (real ∪ synthetic).

    The most faithful and most expensive estimator: K full trainings per cycle and K forward passes per input (or one
    vectorised forward over the stacked members, see `stack_members`).

    Args:
        num_members (`int`, defaults to 5): Ensemble size, K.
        model_init (`Callable[[], nn.Module]`, *optional*): Returns a new, untrained model. Defaults to the trainer's
            `model_init`, else to `modeling.default_model_init(trainer.model)` (reload the pretrained checkpoint with
            a new head, or re-initialise a model built from a config).
        seed (`int`, defaults to 0): Member `k` is initialised and trained with seed `seed + k`.
        stack_members (`bool`, *optional*): Score all members with one `torch.vmap`-ed forward over their stacked
            parameters and buffers instead of a loop (same logits to float rounding, differentiable w.r.t. the
            inputs; see the module docstring). `None` (default): stacked when the members are of a class and size
            in `STACKED_BY_DEFAULT` (where it was measured faster: small `ResNetForImageClassification`s such as the
            digits ResNet) and `stacking_blocker` finds nothing in the way (same architecture and weight shapes,
            eval mode, no hooks), else the loop, logged at debug level. `True`: stacked for any members it applies
            to; raises `ValueError` where it does not (in `fit`, `refresh` or, e.g. for a member put in training
            mode, when scoring). `False`: the loop.

    The stacked weights are copies, rebuilt automatically when a member or any of its tensors is replaced or
    written in place (`fit`, an optimizer step, `load_state_dict`, `.to()`); call `refresh()` after writing through
    `param.data` (which torch does not track) or replacing a member's submodules. Fitted state: `members_`, and
    `stacked_` (the members' `StackedMembers`, `None` where stacking is off or does not apply).
    """

    def __init__(
        self,
        num_members: int = 5,
        model_init: Callable[[], nn.Module] | None = None,
        seed: int = 0,
        stack_members: bool | None = None,
    ):
        if num_members < 2:
            raise ValueError(f"DeepEnsemble needs at least 2 members to measure disagreement, got {num_members}.")
        if stack_members not in (None, True, False):
            raise ValueError(f"stack_members must be None (auto), True or False, got {stack_members!r}.")
        self.num_members = num_members
        self.model_init = model_init
        self.seed = seed
        self.stack_members = stack_members

    def fit(self, trainer: FitContext) -> DeepEnsemble:
        self._bind(trainer)
        if self.model_init is not None:
            model_init = self.model_init
        elif trainer.model_init is not None:
            model_init = trainer.call_model_init
        else:
            model_init = default_model_init(trainer.current_model())
        members = []
        for member in range(self.num_members):
            seed = self.seed + member
            torch.manual_seed(seed)
            model = model_init()
            trained = trainer.train_member(model, seed=seed, name=f"deep_ensemble_member_{member}")
            members.append(trained.eval())
        self.members_ = members
        return self.refresh()

    def refresh(self) -> DeepEnsemble:
        """Decides between stacked and looped scoring for the current `members_`, and (re)stacks their weights.

        Raises:
            `ValueError`: `stack_members=True` and the members cannot be stacked (the reason is named).
        """
        if not hasattr(self, "members_"):
            raise RuntimeError("DeepEnsemble is not fitted yet: call `fit(trainer)` first.")
        # One stacking decision per member selection: all members (`None`), or a subset scored on its own
        # (`subset_member_logits`, e.g. the guide members of a guide/judge split).
        self._stacks: dict[tuple[int, ...] | None, _StackState] = {}
        self._stacked_for(self.members_)
        return self

    @property
    def stacked_(self) -> StackedMembers | None:
        """All members' `StackedMembers` as last decided, or `None` where stacking is off or does not apply."""
        state = getattr(self, "_stacks", {}).get(None)
        return None if state is None else state.stacked

    def _stacked_for(self, members: Sequence[nn.Module], key: tuple[int, ...] | None = None) -> StackedMembers | None:
        """The stacked members to score with, or `None` to loop; restacked when the members or weights changed."""
        if self.stack_members is False:
            return None
        if self.stack_members is None and qualified_class_name(members[0]) not in STACKED_BY_DEFAULT:
            return self._decline(f"{type(members[0]).__name__} is not in STACKED_BY_DEFAULT")
        if not hasattr(self, "_stacks"):
            self._stacks = {}
        state = self._stacks.get(key)
        if state is None or not state.snapshot.matches(members):
            # New members or weights: check (and later stack) again; this is the only place the trees are walked.
            state = self._stacks[key] = _StackState(members)
        reason = state.structure_reason or _mode_blocker(state.snapshot.modules)
        if reason is None and self.stack_members is None:
            reason = state.size_reason
        if reason is not None:
            return self._decline(reason)
        if state.stacked is None:
            state.stacked = StackedMembers(members)
        self._note_stacking(None)
        return state.stacked

    def _decline(self, reason: str) -> None:
        """Loops (logged at debug level when that is new), or raises for `stack_members=True`."""
        if self.stack_members:
            raise ValueError(f"DeepEnsemble(stack_members=True) cannot stack these members: {reason}.")
        self._note_stacking(reason)

    def _note_stacking(self, reason: str | None) -> None:
        """Logs (debug) when scoring switches between stacked and looped, not once per batch."""
        if reason != getattr(self, "_stacking_reason", "unset"):
            if reason is None:
                logger.debug("DeepEnsemble scores its %d members stacked (one vmapped forward).", len(self.members_))
            else:
                logger.debug("DeepEnsemble scores its members one after the other: %s.", reason)
        self._stacking_reason = reason

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Each member's logits for one batch, shaped `[B, C, K]`; differentiable w.r.t. the inputs."""
        if not hasattr(self, "members_"):
            raise RuntimeError("DeepEnsemble is not fitted yet: call `fit(trainer)` first.")
        stacked = self._stacked_for(self.members_)
        if stacked is not None:
            return stacked(inputs)
        return torch.stack([forward_logits(member, inputs) for member in self.members_], dim=-1)

    def subset_member_logits(self, inputs: Mapping[str, Any], members: Sequence[int]) -> torch.Tensor:
        """The logits of the members `members` only (in that order), shaped `[B, C, len(members)]`.

        Equal to `member_logits(inputs)[..., members]`, but only those members run (stacked among themselves where
        the whole ensemble would be): a guide/judge split (`MemberSubset`) then pays for its own members alone,
        e.g. diffusion guidance with 3 of 5 members runs 3 forwards and backwards per step, not 5.
        """
        if not hasattr(self, "members_"):
            raise RuntimeError("DeepEnsemble is not fitted yet: call `fit(trainer)` first.")
        key = tuple(int(member) for member in members)
        selected = [self.members_[member] for member in key]
        stacked = self._stacked_for(selected, key) if len(selected) > 1 else None
        if stacked is not None:
            return stacked(inputs)
        return torch.stack([forward_logits(member, inputs) for member in selected], dim=-1)
