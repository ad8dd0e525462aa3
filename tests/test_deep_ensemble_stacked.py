"""`DeepEnsemble` with stacked members (issue 16): one vmapped forward gives the loop's logits and input gradients,
is restacked when the members change, and falls back to the loop (or raises, when forced) where it cannot apply."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from torch import nn
from transformers import default_data_collator

from hf_active_synth.tasks.digits import make_digits_classifier
from hf_active_synth.uncertainty import DeepEnsemble, MemberSubset
from hf_active_synth.uncertainty.deep_ensemble import stacking_blocker

ROWS = 10


class _Context:
    """The least `FitContext` for `DeepEnsemble.fit`. "Training" a member is one train-mode pass that moves its
    BatchNorm running statistics away from their initial values, so eval mode uses per-member statistics."""

    num_labels = 10
    data_collator = staticmethod(default_data_collator)
    args = SimpleNamespace(per_device_eval_batch_size=4, device=torch.device("cpu"), disable_tqdm=True)
    model_init = None

    def __init__(self, model: nn.Module):
        self.model = model

    def current_model(self) -> nn.Module:
        return self.model

    def train_member(self, model: nn.Module, *, seed: int, name: str) -> nn.Module:
        with torch.no_grad():
            model.train()(pixel_values=torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(seed)))
        return model


def _digits_model(architecture: str = "resnet") -> nn.Module:
    # `DeepEnsemble.fit` seeds torch before each `model_init()` call: draw the factory's seed from it.
    return make_digits_classifier(architecture, seed=int(torch.randint(0, 2**31 - 1, ())))


def _fit(architecture: str = "resnet", **settings) -> DeepEnsemble:
    estimator = DeepEnsemble(num_members=3, model_init=lambda: _digits_model(architecture), seed=0, **settings)
    return estimator.fit(_Context(make_digits_classifier(architecture)))


def _pixels(rows: int = ROWS) -> torch.Tensor:
    return torch.randn(rows, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _loop(estimator: DeepEnsemble) -> DeepEnsemble:
    """The same members, scored one after the other."""
    loop = DeepEnsemble(estimator.num_members, stack_members=False)
    loop.__dict__.update({key: value for key, value in vars(estimator).items() if key.endswith("_")})
    return loop.refresh()


def _input_gradients(estimator, pixels: torch.Tensor) -> torch.Tensor:
    """d(an uncertainty-like objective)/d(inputs), as diffusion guidance takes it (`torch.autograd.grad`)."""
    pixels = pixels.clone().requires_grad_(True)
    logits = estimator.member_logits({"pixel_values": pixels})
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    (gradient,) = torch.autograd.grad((logits.log_softmax(dim=1) * weights).sum(), pixels)
    return gradient


def test_stacked_digits_resnet_matches_the_loop_in_logits_and_input_gradients():
    stacked = _fit()
    assert stacked.stack_members is None and stacked.stacked_ is not None  # on by default for the digits ResNet
    loop = _loop(stacked)
    assert loop.stacked_ is None
    pixels = _pixels()
    logits = stacked.member_logits({"pixel_values": pixels})
    assert logits.shape == (ROWS, 10, 3) and not torch.allclose(logits[..., 0], logits[..., 1], atol=1e-3)
    torch.testing.assert_close(logits, loop.member_logits({"pixel_values": pixels}), atol=1e-5, rtol=1e-4)
    gradient = _input_gradients(stacked, pixels)
    assert gradient.abs().sum() > 0
    torch.testing.assert_close(gradient, _input_gradients(loop, pixels), atol=1e-5, rtol=1e-4)
    # The stacked copies are detached: guidance's backward writes no gradient into the members.
    assert all(parameter.grad is None for member in stacked.members_ for parameter in member.parameters())
    # Through `predict` (batches of 4 from a dataset) and through a member subset (guide/judge split).
    dataset = Dataset.from_dict({"pixel_values": pixels}).with_format("torch")
    torch.testing.assert_close(stacked.predict(dataset), loop.predict(dataset), atol=1e-5, rtol=1e-4)
    subset = MemberSubset(stacked, [0, 2]).member_logits({"pixel_values": pixels})
    torch.testing.assert_close(subset, logits[..., [0, 2]])


def test_stacked_weights_follow_the_members():
    stacked = _fit()
    pixels = {"pixel_values": _pixels()}

    def assert_matches_loop() -> None:
        torch.testing.assert_close(stacked.member_logits(pixels), _loop(stacked).member_logits(pixels))

    before = stacked.stacked_
    with torch.no_grad():  # an in-place write (an optimizer step) to one weight of one member
        next(stacked.members_[1].parameters()).add_(0.5)
    assert_matches_loop()
    assert stacked.stacked_ is not before  # restacked
    stacked.members_[0].load_state_dict(stacked.members_[2].state_dict())  # loading a checkpoint into a member
    assert_matches_loop()
    torch.testing.assert_close(stacked.member_logits(pixels)[..., 0], stacked.member_logits(pixels)[..., 2])
    stacked.members_ = stacked.members_[::-1]  # replaced members
    assert_matches_loop()
    unchanged = stacked.stacked_
    stacked.member_logits(pixels)
    assert stacked.stacked_ is unchanged  # nothing changed: not restacked


def test_auto_stacking_falls_back_to_the_loop_for_a_named_reason(caplog):
    stacked = _fit()
    pixels = {"pixel_values": _pixels()}
    expected = _loop(stacked).member_logits(pixels)
    stacked.members_[1].train()  # train-mode BatchNorm: batch statistics, in-place running-stat updates
    with caplog.at_level(logging.DEBUG, logger="hf_active_synth.uncertainty.deep_ensemble"):
        with torch.no_grad():
            looped = stacked.member_logits(pixels)  # the loop, with member 1 in training mode
    assert any("in training mode" in record.getMessage() for record in caplog.records)
    torch.testing.assert_close(looped[..., [0, 2]], expected[..., [0, 2]])
    assert not torch.allclose(looped[..., 1], expected[..., 1])
    stacked.members_[1].eval()  # back to stacking, restacked: that pass moved member 1's running statistics
    before = stacked.stacked_
    torch.testing.assert_close(stacked.member_logits(pixels), _loop(stacked).member_logits(pixels))
    assert stacked.stacked_ is not before
    handle = stacked.members_[0].register_forward_hook(lambda module, args, output: None)
    assert "forward hooks" in stacking_blocker(stacked.members_)
    handle.remove()
    assert stacking_blocker(stacked.members_) is None
    # Not in STACKED_BY_DEFAULT (measured slower stacked): the ConvNeXt loops by default ...
    convnext = _fit("convnext")
    assert convnext.stacked_ is None
    # ... and `stack_members=True` stacks it all the same, with the loop's logits (LayerNorm, eval-mode drop path).
    forced = _fit("convnext", stack_members=True)
    assert forced.stacked_ is not None
    torch.testing.assert_close(forced.member_logits(pixels), _loop(forced).member_logits(pixels), atol=1e-5, rtol=1e-4)


def test_forced_stacking_raises_where_it_does_not_apply():
    with pytest.raises(ValueError, match="stack_members must be"):
        DeepEnsemble(2, stack_members="yes")
    mixed = _fit(stack_members=False)
    mixed.members_ = [mixed.members_[0], make_digits_classifier("convnext").eval()]
    mixed.stack_members = True
    with pytest.raises(ValueError, match="member 1 is a ConvNextForImageClassification"):
        mixed.refresh()
    wider = make_digits_classifier("resnet")
    wider.classifier[-1] = nn.Linear(wider.classifier[-1].in_features, 10, bias=False)
    mixed.members_ = [mixed.members_[0], wider.eval()]
    with pytest.raises(ValueError, match="modules differ"):
        mixed.refresh()
    forced = _fit(stack_members=True)
    forced.members_[0].train()
    with pytest.raises(ValueError, match="training mode"):
        forced.member_logits({"pixel_values": _pixels()})


def test_stacking_a_plain_module_with_a_bare_tensor_output():
    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.net(features)

    torch.manual_seed(0)
    members = [Classifier().eval() for _ in range(3)]
    estimator = DeepEnsemble(3)
    estimator.members_ = members
    assert estimator.refresh().stacked_ is None  # not in STACKED_BY_DEFAULT
    estimator.stack_members = True
    assert estimator.refresh().stacked_ is not None
    features = torch.randn(5, 4)
    torch.testing.assert_close(
        estimator.member_logits({"features": features, "labels": torch.zeros(5)}),
        torch.stack([member(features) for member in members], dim=-1),
    )


@pytest.mark.parametrize("stack_members", [None, False])
def test_a_member_subset_runs_only_its_members(stack_members):
    """A guide/judge split pays for its own members alone: `MemberSubset` over a `DeepEnsemble` runs the kept
    members only (stacked among themselves where the ensemble stacks), with the whole ensemble's logits and input
    gradients for those members; the whole ensemble's stacked weights are not rebuilt by scoring a subset."""
    estimator = _fit(stack_members=stack_members)
    full_stack = estimator.stacked_
    pixels = _pixels()
    whole = estimator.member_logits({"pixel_values": pixels})
    calls = [0] * estimator.num_members
    if stack_members is False:
        for index, member in enumerate(estimator.members_):

            def counted(*args, _index=index, _forward=member.forward, **kwargs):
                calls[_index] += 1
                return _forward(*args, **kwargs)

            member.forward = counted  # an instance attribute (a hook would count too, but block stacking)
    view = MemberSubset(estimator, [2, 0])
    logits = view.member_logits({"pixel_values": pixels})
    torch.testing.assert_close(logits, whole[..., [2, 0]], atol=1e-5, rtol=1e-4)
    if stack_members is False:
        assert calls == [1, 0, 1]  # member 1 never ran
    else:  # one vmapped forward over the two kept members' weights only
        subset_stack = estimator._stacks[(2, 0)].stacked
        assert subset_stack is not None and all(len(t) == 2 for t in subset_stack.tensors.values())
    gradient = _input_gradients(view, pixels)
    pixels_grad = pixels.clone().requires_grad_(True)
    reference = estimator.member_logits({"pixel_values": pixels_grad})[..., [2, 0]]
    weights = torch.randn(reference.shape, generator=torch.Generator().manual_seed(2))
    (expected,) = torch.autograd.grad((reference.log_softmax(dim=1) * weights).sum(), pixels_grad)
    torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-4)
    assert estimator.stacked_ is full_stack  # the whole ensemble's stack survived the subset calls
