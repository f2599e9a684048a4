"""What the trainers optimise on scalar rewards: Bradley-Terry, Rao-Kupper for pairs that may tie,
and GRPO's group-normalised advantages (stage 2 and Wan GRPO alike).

The preference functions take rewards of shape `(B,)` and return a scalar mean loss or `(B,)` probabilities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import DeScoreInputError


def bradley_terry_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """`-log sigmoid(r_w - r_l)`, averaged over pairs."""
    return -F.logsigmoid(reward_chosen - reward_rejected).mean()


def labelled_bradley_terry_loss(reward_a: torch.Tensor, reward_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BT on pairs labelled +1 (A wins) or -1 (B wins); ties (0) are skipped. A batch of ties only
    gives a zero loss that keeps the graph."""
    decided = labels != 0
    if not decided.any():
        return (reward_a + reward_b).sum() * 0.0
    sign = labels[decided].to(reward_a.dtype)
    return bradley_terry_loss(sign * reward_a[decided], sign * reward_b[decided])


def rao_kupper_probabilities(margin: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """P(A > B), P(tie), P(B > A) for margins `r_A - r_B` under Rao-Kupper with `theta > 1`.

    P(A > B) = sigmoid(d - ln theta); P(B > A) = sigmoid(-d - ln theta);
    P(tie) = (theta^2 - 1) sigmoid(d - ln theta) sigmoid(-d - ln theta). The three sum to one.
    """
    if not theta > 1.0:
        raise DeScoreInputError(f"theta must be greater than 1, got {theta}")
    log_theta = math.log(theta)
    p_a = torch.sigmoid(margin - log_theta)
    p_b = torch.sigmoid(-margin - log_theta)
    return p_a, (theta**2 - 1.0) * p_a * p_b, p_b


def rao_kupper_loss(reward_a: torch.Tensor, reward_b: torch.Tensor, label: torch.Tensor, theta: float) -> torch.Tensor:
    """Negative log-likelihood under Rao-Kupper; `label` is +1 (A wins), -1 (B wins) or 0 (tie)."""
    margin = reward_a - reward_b
    log_theta = math.log(theta)
    log_p_a = F.logsigmoid(margin - log_theta)
    log_p_b = F.logsigmoid(-margin - log_theta)
    log_p_tie = math.log(theta**2 - 1.0) + log_p_a + log_p_b
    log_likelihood = torch.where(label > 0, log_p_a, torch.where(label < 0, log_p_b, log_p_tie))
    return -log_likelihood.mean()


def group_advantages(
    rewards: torch.Tensor, group_size: int, bessel: bool = True, clip: float | None = None, epsilon: float = 1e-4
) -> torch.Tensor:
    """`(r - group mean) / (group std + epsilon)` for rewards `(N,)` in consecutive groups of
    `group_size`, clipped to `+-clip` when given. `bessel`: the std with Bessel's correction (TRL's
    GRPO, stage 2); without it, as Flow-GRPO (Wan GRPO). `epsilon`: 1e-4 as TRL and Flow-GRPO; the
    DeScore authors' stage 2 uses 1e-6."""
    groups = torch.as_tensor(rewards, dtype=torch.float32).view(-1, group_size)
    spread = groups.std(1, correction=1 if bessel else 0, keepdim=True)
    advantages = ((groups - groups.mean(1, keepdim=True)) / (spread + epsilon)).view(-1)
    return advantages if clip is None else advantages.clamp(-clip, clip)
