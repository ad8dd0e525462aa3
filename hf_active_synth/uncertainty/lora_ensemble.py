"""LoRA ensembles: one frozen base model, K peft LoRA adapters trained with different seeds.

Scoring shares the work the adapters allow sharing. Adapters sit on the top `num_adapted_layers` blocks only, so the
trunk below them is the same for every member: it is computed once per batch, then its output is repeated K times
along the batch axis at the first adapted block (`lora_repeat`), and each copy runs through its own adapter, by
default with per-member merged weights (one batched matmul per adapted layer), or with peft's mixed-adapter batches
(`adapter_names`); see `lora_scoring`. The cost is one trunk pass plus K passes of the adapted blocks, instead of K
full passes. Where the head reads token 0 only and the adapted block is the last one (`first_token_only`, on by
default where that is provably exact), that block runs for token 0 alone, which brings K = 5 members to about the
cost of one plain pass. What makes the members differ (adapter and head init, bootstrap resamples) is in
`lora_members`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from .base import BatchedEstimator, forward_logits
from .context import MemberDataContext
from .lora_members import (
    ADAPTER_INITS,
    HEAD_INITS,
    AdapterInit,
    HeadInit,
    bootstrap_rows,
    default_lora_config,
    find_block_list,
    reinit_member_heads,
)
from .lora_repeat import RepeatedBatchError, mixed_adapter_batch
from .lora_scoring import (
    first_token_only_blocker,
    merged_adapter_batch,
    plan_merged_layers,
    token0_head_blocker,
)

if TYPE_CHECKING:
    from .context import FitContext

__all__ = ["LoRAEnsemble", "default_lora_config", "find_block_list"]  # the two helpers live in `lora_members`

logger = logging.getLogger(__name__)


class LoRAEnsemble(BatchedEstimator):
    """K LoRA adapters on a frozen copy of the trained model, each trained with its own seed.

    Args:
        num_members (`int`, defaults to 5): Number of adapters, K.
        lora_config (`peft.LoraConfig`, *optional*): The adapters' configuration. Defaults to
            `default_lora_config(model, num_labels, num_adapted_layers, rank, adapter_init)`: LoRA on every linear of
            the top blocks and a per-member copy of the head. When given, `num_adapted_layers`, `rank` and
            `adapter_init` are not read (set them on the config).
        num_adapted_layers (`int`, defaults to 1): Top blocks carrying adapters. The trunk below the lowest adapted
            block is still computed once for all members; each adapted block runs K times.
        rank (`int`, defaults to 8): LoRA rank r (`lora_alpha = 2r`).
        adapter_init (`str`, defaults to `"zero_b"`): How A and B start (peft's `init_lora_weights`). `"zero_b"`:
            peft's default, B = 0, every member starts as the trained model. `"gaussian"`: A ~ N(0, 1/r²), B = 0
            (members still start identical). `"random"`: `init_lora_weights=False`, torch's default `nn.Linear` init
            for A and B, so each member starts at its own random perturbation of the trained model.
        head_init (`str`, defaults to `"trained"`): How each member's copy of the task head starts. `"trained"`: the
            trained head (peft's `modules_to_save` copy). `"random"`: re-initialised from the member's seed
            (`reset_parameters`), as a deep ensemble member's head is.
        bootstrap (`bool`, defaults to `False`): Train each member on its own seeded bootstrap resample (with
            replacement) of the real training rows; accepted synthetic rows are kept whole. Needs a context with
            `restrict_real_rows` ([`MemberDataContext`], e.g. the trainer); on other contexts (cross-fitting folds)
            members train on the context's rows, with a warning.
        num_train_epochs (`float`, *optional*): Epochs of each adapter. Defaults to the trainer's member epochs
            (`member_num_train_epochs`, else `num_train_epochs`). Needs a [`MemberDataContext`] (else a warning).
        seed (`int`, defaults to 0): Adapter `k` is initialised, resampled and trained with seed `seed + k`.
        share_trunk (`bool`, defaults to `True`): Score with one trunk pass + K copies of the adapted top blocks. When
            the adapters cover the whole model, or the model's head cannot take a repeated batch, scoring falls back
            to K full passes (logged once).
        scoring (`str`, defaults to `"merged"`): How the adapted blocks score the K copies (see
            `hf_active_synth.uncertainty.lora_scoring`). `"merged"`: per-member merged weights `W + s·B_k A_k`, one
            batched matmul per layer (layers it does not handle keep peft's path). `"mixed_adapter_batch"`: peft's
            mixed-adapter batches everywhere (slower; kept for comparison). Both give the same logits to float
            rounding. Merged weights leave out LoRA dropout: a model put in training mode is scored with peft's path.
        first_token_only (`bool`, *optional*): With `scoring="merged"`, compute only token 0 in the adapted block
            (the same logits to float rounding, at about the cost of one plain pass for K = 5). `None` (default):
            on exactly where it is exact, i.e. the model is one of `lora_scoring.TOKEN0_HEADS` (transformers
            sequence classifiers whose head reads `hidden_states[:, 0]` alone, e.g. `BertForSequenceClassification`
            through `BertPooler`, `RobertaForSequenceClassification`, with their reading module unreplaced), scoring
            is `"merged"`, and the single adapted block is the model's last, BERT-style block; otherwise off (logged
            at debug level; resolved in `refresh`, see the fitted `first_token_only_`). `True`: on for any model
            whose adapted block is a BERT-style last block (`fit` and `refresh` raise `ValueError` otherwise);
            whether the head reads token 0 alone is then up to the caller. `False`: off.

    The trainer's model is deep-copied before adapters are added: the model being trained is never modified. The merged
    weights are computed once, at the end of `fit`; call `refresh()` after changing the adapters or moving the model.
    Fitted state: `model_`, `member_rows_` (each member's resampled real-row indices, `None` without bootstrap) and
    `first_token_only_` (whether scoring computes token 0 only in the adapted block).
    """

    def __init__(
        self,
        num_members: int = 5,
        lora_config: LoraConfig | None = None,
        num_adapted_layers: int = 1,
        seed: int = 0,
        share_trunk: bool = True,
        scoring: Literal["merged", "mixed_adapter_batch"] = "merged",
        first_token_only: bool | None = None,
        rank: int = 8,
        adapter_init: AdapterInit = "zero_b",
        head_init: HeadInit = "trained",
        bootstrap: bool = False,
        num_train_epochs: float | None = None,
    ):
        if num_members < 2:
            raise ValueError(f"LoRAEnsemble needs at least 2 adapters to measure disagreement, got {num_members}.")
        if scoring not in _SCORING_MODES:
            raise ValueError(f"scoring must be one of {', '.join(map(repr, _SCORING_MODES))}, got {scoring!r}.")
        if first_token_only is True and scoring != "merged":
            raise ValueError(f"first_token_only=True is an option of scoring='merged', not of scoring={scoring!r}.")
        if adapter_init not in ADAPTER_INITS:
            raise ValueError(f"adapter_init must be one of {list(ADAPTER_INITS)}, got {adapter_init!r}.")
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {list(HEAD_INITS)}, got {head_init!r}.")
        if isinstance(num_adapted_layers, bool) or not isinstance(num_adapted_layers, int) or num_adapted_layers < 1:
            raise ValueError(
                f"num_adapted_layers must be an int >= 1 (top blocks with adapters), got {num_adapted_layers!r}."
            )
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be an int >= 1 (the LoRA rank r), got {rank!r}.")
        if num_train_epochs is not None and not num_train_epochs > 0:
            raise ValueError(
                f"num_train_epochs must be > 0, or None for the trainer's member epochs; got {num_train_epochs!r}."
            )
        self.num_members = num_members
        self.lora_config = lora_config
        self.num_adapted_layers = num_adapted_layers
        self.seed = seed
        self.share_trunk = share_trunk
        self.scoring = scoring
        self.first_token_only = first_token_only
        self.rank = rank
        self.adapter_init = adapter_init
        self.head_init = head_init
        self.bootstrap = bootstrap
        self.num_train_epochs = num_train_epochs

    @property
    def adapter_names(self) -> list[str]:
        return [f"member_{member}" for member in range(self.num_members)]

    def fit(self, trainer: FitContext) -> LoRAEnsemble:
        self._bind(trainer)
        base = copy.deepcopy(trainer.current_model())
        if isinstance(base, PeftModel):
            base = base.merge_and_unload()
        base.requires_grad_(False)
        config = self.lora_config or default_lora_config(
            base, trainer.num_labels, self.num_adapted_layers, self.rank, self.adapter_init
        )
        names = self.adapter_names
        peft_model: PeftModel | None = None
        for member, name in enumerate(names):
            torch.manual_seed(self.seed + member)  # each adapter's A (and B) draws from its own seed
            if peft_model is None:
                peft_model = get_peft_model(base, copy.deepcopy(config), adapter_name=name)
            else:
                peft_model.add_adapter(name, copy.deepcopy(config))
            if self.head_init == "random":
                reinit_member_heads(peft_model, name, seed=self.seed + member)
        if self.first_token_only is True:  # fail before training the adapters
            split_module = self._find_split(peft_model)[0] if self.share_trunk else None
            reason = self._first_token_only_blocker(peft_model, split_module)
            if reason is not None:
                raise ValueError(reason)
        self.member_rows_: list[list[int] | None] = []
        for member, name in enumerate(names):
            peft_model.set_adapter(name)
            self.member_rows_.append(self._train_member(trainer, peft_model, member, name))
        peft_model.eval()
        self.model_ = peft_model
        self.refresh()
        return self

    def _train_member(self, trainer: FitContext, model: PeftModel, member: int, name: str) -> list[int] | None:
        """Trains the active adapter (on its bootstrap resample, for its epochs); returns the resampled rows."""
        seed, run_name = self.seed + member, f"lora_ensemble_{name}"
        if not self.bootstrap and self.num_train_epochs is None:
            trainer.train_member(model, seed=seed, name=run_name)
            return None
        if not isinstance(trainer, MemberDataContext):
            if member == 0:
                logger.warning(
                    "LoRAEnsemble(bootstrap=%s, num_train_epochs=%s) needs a context with `restrict_real_rows` and "
                    "`training_args` (the trainer); %s has neither, so adapters train on its rows with its member "
                    "epochs.",
                    self.bootstrap,
                    self.num_train_epochs,
                    type(trainer).__name__,
                )
            trainer.train_member(model, seed=seed, name=run_name)
            return None
        kwargs: dict[str, Any] = {}
        if self.num_train_epochs is not None:
            output_dir = str(Path(trainer.args.output_dir) / "members" / run_name)
            member_args = trainer.args.member_args(seed, output_dir=output_dir)
            kwargs["training_args"] = dataclasses.replace(member_args, num_train_epochs=self.num_train_epochs)
        rows = bootstrap_rows(len(trainer.real_train_dataset), seed) if self.bootstrap else None
        with trainer.restrict_real_rows(rows) if rows is not None else nullcontext():
            trainer.train_member(model, seed=seed, name=run_name, **kwargs)
        return rows

    def refresh(self) -> LoRAEnsemble:
        """Recomputes the shared-trunk split and, with `scoring="merged"`, the per-member merged weights.

        Call it after changing the adapters' or the base model's weights, or moving the model to another device or
        dtype: the merged weights are snapshots taken at the end of `fit`.

        Raises:
            `ValueError`: `first_token_only=True` on a model where it does not apply.
        """
        if not hasattr(self, "model_"):
            raise RuntimeError("LoRAEnsemble is not fitted yet: call `fit(trainer)` first.")
        if self.scoring not in _SCORING_MODES:
            raise ValueError(f"scoring must be one of {', '.join(map(repr, _SCORING_MODES))}, got {self.scoring!r}.")
        self.split_module_, self.later_blocks_ = self._find_split(self.model_) if self.share_trunk else (None, [])
        self.first_token_only_ = self._resolve_first_token_only()
        use_merged = self.scoring == "merged" and self.split_module_ is not None
        self.merged_layers_ = plan_merged_layers(self.model_, self.adapter_names) if use_merged else None
        return self

    @staticmethod
    def _find_split(peft_model: PeftModel) -> tuple[nn.Module | None, list[nn.Module]]:
        """The first block holding adapters and the blocks above it, if every block below it is adapter-free (so the
        trunk is shared); else `(None, [])`."""
        blocks = find_block_list(peft_model.get_base_model())
        if blocks is None:
            return None, []
        adapted = [i for i, block in enumerate(blocks[1]) if any(isinstance(m, LoraLayer) for m in block.modules())]
        if not adapted or adapted[0] == 0:
            return None, []
        return blocks[1][adapted[0]], list(blocks[1][adapted[0] + 1 :])

    @staticmethod
    def _first_token_only_blocker(peft_model: PeftModel, split_module: nn.Module | None) -> str | None:
        blocks = find_block_list(peft_model.get_base_model())
        return first_token_only_blocker(split_module, None if blocks is None else blocks[1][-1])

    def _resolve_first_token_only(self) -> bool:
        """`first_token_only` for the fitted model: `True` checked (raises), `None` decided, `False` as is."""
        if self.first_token_only is False:
            return False
        if self.first_token_only is True:
            if self.scoring != "merged":
                raise ValueError("first_token_only=True is an option of scoring='merged'.")
            reason = self._first_token_only_blocker(self.model_, self.split_module_)
            if reason is not None:
                raise ValueError(reason)
            return True
        if self.scoring != "merged":
            reason = f"scoring={self.scoring!r}"
        else:
            reason = token0_head_blocker(self.model_.get_base_model()) or self._first_token_only_blocker(
                self.model_, self.split_module_
            )
        if reason is not None:
            logger.debug("LoRAEnsemble scores every token of the adapted blocks (first_token_only off): %s", reason)
            return False
        return True

    def _repeated_batch(self, batch_size: int) -> AbstractContextManager[None]:
        """The hooks (and, for merged scoring, patched forwards) that score one batch with every adapter."""
        if self.scoring == "merged" and not self.model_.training:  # merged weights leave out LoRA dropout
            if getattr(self, "merged_layers_", None) is None or not hasattr(self, "first_token_only_"):
                # e.g. `scoring` changed after fitting, or fitted state copied from an older version
                self.refresh()
            return merged_adapter_batch(
                self.model_,
                self.split_module_,
                self.merged_layers_,
                self.adapter_names,
                batch_size,
                first_token_only=self.first_token_only_,
                later_blocks=self.later_blocks_,
            )
        return mixed_adapter_batch(
            self.model_, self.split_module_, self.adapter_names, batch_size, later_blocks=self.later_blocks_
        )

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Each adapter's logits for one batch, shaped `[B, C, K]`; differentiable w.r.t. the inputs."""
        if not hasattr(self, "model_"):
            raise RuntimeError("LoRAEnsemble is not fitted yet: call `fit(trainer)` first.")
        if self.split_module_ is not None:
            batch_size = _batch_size(inputs)
            try:
                with self._repeated_batch(batch_size):
                    logits = forward_logits(self.model_, inputs)
            except RepeatedBatchError as error:
                reason = str(error)
            else:
                if logits.shape[0] == batch_size * self.num_members:
                    return logits.view(self.num_members, batch_size, -1).permute(1, 2, 0)
                reason = (
                    f"the model's head did not keep the repeated batch (got {logits.shape[0]} rows for "
                    f"{self.num_members} x {batch_size})"
                )
            logger.warning("Scoring LoRA members with one full pass each from now on: %s.", reason)
            self.split_module_ = None
        return self._sequential_member_logits(inputs)

    def _sequential_member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        logits = []
        for name in self.adapter_names:
            self.model_.set_adapter(name)
            logits.append(forward_logits(self.model_, inputs))
        return torch.stack(logits, dim=-1)


_SCORING_MODES = ("merged", "mixed_adapter_batch")


def _batch_size(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return value.shape[0]
    raise ValueError("Cannot infer the batch size: the inputs hold no tensors.")
