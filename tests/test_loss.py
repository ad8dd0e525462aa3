"""The λ-weighted loss: a synthetic example's gradient is exactly λ times a real one's."""

import pytest
import torch

from hf_active_synth.trainer import SyntheticWeightedLossMixin


class _Loss(SyntheticWeightedLossMixin):
    def __init__(self, weight):
        self.synthetic_loss_weight = weight


class _Identity(torch.nn.Module):
    def forward(self, logits):
        return logits


@pytest.mark.parametrize("weight", [0.3, 0.0, 1.0, 2.5])
def test_synthetic_gradient_is_lambda_times_real(weight):
    # Two identical examples, one real and one synthetic: their logits' gradients must differ by exactly λ.
    logits = torch.tensor([[0.2, -0.4, 1.0], [0.2, -0.4, 1.0], [1.0, 0.0, 0.0]], requires_grad=True)
    inputs = {
        "logits": logits,
        "labels": torch.tensor([2, 2, 0]),
        "is_synthetic": torch.tensor([False, True, False]),
    }
    loss = _Loss(weight).compute_loss(_Identity(), inputs)
    loss.backward()
    real_grad, synthetic_grad = logits.grad[0], logits.grad[1]
    torch.testing.assert_close(synthetic_grad, weight * real_grad)
    assert real_grad.abs().sum() > 0


def test_loss_is_weighted_sum_over_batch_size():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -0.5]])
    labels = torch.tensor([0, 0, 1, 1])
    is_synthetic = torch.tensor([False, True, True, False])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = (ce[0] + ce[3] + 0.3 * (ce[1] + ce[2])) / 4
    loss = _Loss(0.3).compute_loss(_Identity(), {"logits": logits, "labels": labels, "is_synthetic": is_synthetic})
    torch.testing.assert_close(loss, expected)


def test_all_real_batch_is_plain_mean_cross_entropy():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = _Loss(0.3).compute_loss(_Identity(), {"logits": logits, "labels": labels})
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))
