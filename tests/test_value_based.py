"""Value-based deep family: the TD targets (terminated vs truncated), Double DQN's decoupling, learning."""

import pytest
import torch
import torch.nn as nn
from conftest import load_algo, run_algo

STEMS = ["dqn_cartpole", "dqn_pendulum", "ddqn_pendulum"]


class FixedQ(nn.Module):
    """A 'network' that returns fixed Q-values for every observation: [B, O] -> [B, A]."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, obs):
        return self.values.expand(len(obs), -1)


def batch():
    """Two transitions with the same reward: one terminated, one truncated by the time limit.

    A truncated transition is stored with termination 0 (the main loop passes `terminations`, never
    `terminations | truncations`), so its target must bootstrap from the final observation.
    """
    rewards = torch.tensor([1.0, 1.0])
    next_obs = torch.zeros(2, 3)
    terminations = torch.tensor([1.0, 0.0])  # [terminated, truncated]
    return rewards, next_obs, terminations


@pytest.mark.parametrize("stem", STEMS)
def test_td_target_terminated_vs_truncated(stem):
    module = load_algo(stem)
    q = FixedQ([2.0, 5.0, 3.0])
    target = FixedQ([2.0, 5.0, 3.0])
    y = module.td_target(q, target, *batch(), gamma=0.9)
    assert y[0].item() == pytest.approx(1.0), "a terminated transition must not bootstrap"
    assert y[1].item() == pytest.approx(1.0 + 0.9 * 5.0), "a truncated transition must bootstrap"


@pytest.mark.parametrize(
    "stem, expected",
    [("dqn_pendulum", 1.0 + 0.9 * 7.0), ("ddqn_pendulum", 1.0 + 0.9 * 4.0)],
)
def test_double_dqn_lets_the_online_net_choose(stem, expected):
    """Online net prefers action 0, target net action 2: DQN takes max Q_target = 7, Double DQN
    takes Q_target(s', argmax Q) = Q_target(s', 0) = 4."""
    module = load_algo(stem)
    q = FixedQ([9.0, 1.0, 0.0])
    target = FixedQ([4.0, 1.0, 7.0])
    y = module.td_target(q, target, *batch(), gamma=0.9)
    assert y[0].item() == pytest.approx(1.0)
    assert y[1].item() == pytest.approx(expected)


def test_soft_update_and_hard_copy():
    module = load_algo("dqn_cartpole")
    online, target = nn.Linear(2, 2), nn.Linear(2, 2)
    before = target.weight.detach().clone()
    module.soft_update(target, online, 0.25)
    assert torch.allclose(target.weight, 0.25 * online.weight + 0.75 * before)
    module.soft_update(target, online, 1.0)
    assert torch.equal(target.weight, online.weight)


def test_pendulum_actions_include_both_ends():
    module = load_algo("dqn_pendulum")
    env = module.make_env(module.Args(n_actions=11))
    assert env.action_space.n == 11
    assert env.action(0)[0] == pytest.approx(-2.0) and env.action(10)[0] == pytest.approx(2.0)
    assert env.action(1)[0] == pytest.approx(-1.6)


def test_replay_buffer_wraps_around():
    import numpy as np

    module = load_algo("dqn_cartpole")
    rb = module.ReplayBuffer(5, 2)
    for step in range(3):  # 3 vector steps of E = 2 transitions: 6 > 5, so the first is overwritten
        obs = np.full((2, 2), step, dtype=np.float32)
        rb.add(obs, np.array([0, 1]), np.array([1.0, 2.0]), obs + 1, np.array([0.0, 1.0]))
    assert rb.full and rb.pos == 1
    assert rb.obs[0, 0] == 2.0 and rb.terminations.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]


# ---------------------------------------------------------------- learning (defaults, fixed seed)
@pytest.mark.learning
@pytest.mark.parametrize(
    "stem, argv, threshold",
    [
        ("dqn_cartpole", [], 475.0),
        ("dqn_pendulum", [], -200.0),
        ("ddqn_pendulum", ["--total-steps", "20000"], -200.0),
    ],
)
def test_learns(stem, argv, threshold, runs_dir):
    summary = run_algo(stem, ["--seed", "1", *argv], runs_dir)
    assert summary["eval_return_mean"] >= threshold, summary
