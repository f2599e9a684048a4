import math

import pytest
import torch

from descore_reward.losses import labelled_bradley_terry_loss, rao_kupper_loss, rao_kupper_probabilities


def test_labelled_bradley_terry_skips_ties_and_follows_the_label():
    reward_a, reward_b = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 5.0, 3.0])
    loss = labelled_bradley_terry_loss(reward_a, reward_b, torch.tensor([1, 0, -1]))
    expected = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(-2.0)))) / 2
    assert loss.item() == pytest.approx(expected)
    grad_source = reward_a.clone().requires_grad_()
    ties = labelled_bradley_terry_loss(grad_source, reward_b, torch.tensor([0, 0, 0]))
    ties.backward()
    assert ties.item() == 0.0 and torch.all(grad_source.grad == 0)


def test_rao_kupper_probabilities_sum_to_one_and_match_the_loss():
    margin = torch.tensor([-2.0, 0.0, 0.7])
    p_a, p_tie, p_b = rao_kupper_probabilities(margin, 5.0)
    torch.testing.assert_close(p_a + p_tie + p_b, torch.ones(3))
    loss = rao_kupper_loss(margin, torch.zeros(3), torch.tensor([1, 0, -1]), 5.0)
    assert loss.item() == pytest.approx(-(p_a[0].log() + p_tie[1].log() + p_b[2].log()).item() / 3, rel=1e-5)
