"""Policy-gradient family: the return/advantage estimators against plain loops, and learning tests.

Rollouts are [T, E]; values is [T+1, E] with values[t + 1] = V(observation after step t), the
final observation where step t ended an episode. Env 0 below terminates at t=1 and env 1 is
truncated by the time limit at t=2, so both a cut without and one with a bootstrap are checked.
"""

import pytest
import torch
from conftest import load_algo, run_algo

GAMMA, LAMBDA = 0.9, 0.8
REWARDS = torch.tensor([[1.0, 0.5], [2.0, 1.0], [0.5, 2.0], [1.0, 1.5]])  # [T=4, E=2]
VALUES = torch.tensor([[0.3, 0.2], [0.4, 0.6], [0.7, 0.1], [0.2, 0.9], [0.5, 0.8]])  # [T+1, E]
TERMINATIONS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # env 0 fails at t=1
TRUNCATIONS = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # env 1 times out at t=2
DONES = torch.maximum(TERMINATIONS, TRUNCATIONS)


def episode_end(e: int, t: int) -> int:
    """Last step of the episode that step t of env e belongs to (or of the rollout)."""
    while t < REWARDS.shape[0] - 1 and not DONES[t, e]:
        t += 1
    return t


def naive_gae(gamma: float, lam: float) -> torch.Tensor:
    """A_t = sum_k (gamma * lam)^k delta_{t+k} up to the episode's (or rollout's) last step."""
    out = torch.zeros_like(REWARDS)
    for e in range(REWARDS.shape[1]):
        for t in range(REWARDS.shape[0]):
            for k in range(episode_end(e, t) - t + 1):
                s = t + k
                bootstrap = 0.0 if TERMINATIONS[s, e] else gamma * VALUES[s + 1, e].item()
                delta = REWARDS[s, e].item() + bootstrap - VALUES[s, e].item()
                out[t, e] += (gamma * lam) ** k * delta
    return out


def naive_returns(gamma: float) -> torch.Tensor:
    """G_t = sum_k gamma^k r_{t+k} to the episode's end, + gamma^(n) V(s_end+1) unless it terminated."""
    out = torch.zeros_like(REWARDS)
    for e in range(REWARDS.shape[1]):
        for t in range(REWARDS.shape[0]):
            end = episode_end(e, t)
            out[t, e] = sum(gamma**k * REWARDS[t + k, e].item() for k in range(end - t + 1))
            if not TERMINATIONS[end, e]:
                out[t, e] += gamma ** (end - t + 1) * VALUES[end + 1, e].item()
    return out


@pytest.mark.parametrize("lam", [0.0, LAMBDA, 1.0])
def test_compute_gae_matches_a_plain_loop(lam):
    gae = load_algo("ppo_cartpole").compute_gae(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, lam)
    torch.testing.assert_close(gae, naive_gae(GAMMA, lam))


def test_compute_gae_bootstraps_a_truncation_but_not_a_termination():
    gae = load_algo("ppo_cartpole").compute_gae(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, LAMBDA)
    # terminated at t=1: no future value, and the next episode (t=2) does not leak back
    assert gae[1, 0].item() == pytest.approx(2.0 - 0.4)
    # truncated at t=2: bootstrap from V(final observation) = VALUES[3, 1], nothing after it leaks back
    assert gae[2, 1].item() == pytest.approx(2.0 + GAMMA * 0.9 - 0.1)
    # CleanRL's ppo.py treats the truncation as a failure: it would get 2.0 - 0.1 here
    assert gae[2, 1].item() != pytest.approx(2.0 - 0.1)


def test_discounted_returns_match_a_plain_loop():
    returns = load_algo("reinforce_cartpole").discounted_returns(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA)
    torch.testing.assert_close(returns, naive_returns(GAMMA))
    assert returns[0, 0].item() == pytest.approx(1.0 + GAMMA * 2.0)  # terminated at t=1: plain MC
    assert returns[2, 1].item() == pytest.approx(2.0 + GAMMA * 0.9)  # truncated: + gamma V(final obs)
    gae_one = load_algo("ppo_cartpole").compute_gae(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, 1.0)
    torch.testing.assert_close(returns, gae_one + VALUES[:-1])  # G_t - V(s_t) is GAE with lambda = 1


def test_td_targets_are_one_step_and_bootstrap_only_a_truncation():
    targets = load_algo("actor_critic_cartpole").td_targets(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA)
    expected = torch.zeros_like(REWARDS)
    for t in range(REWARDS.shape[0]):
        for e in range(REWARDS.shape[1]):
            future = 0.0 if TERMINATIONS[t, e] else GAMMA * VALUES[t + 1, e].item()
            expected[t, e] = REWARDS[t, e].item() + future
    torch.testing.assert_close(targets, expected)
    gae_zero = load_algo("ppo_cartpole").compute_gae(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, 0.0)
    torch.testing.assert_close(targets - VALUES[:-1], gae_zero)  # the TD error is GAE with lambda = 0


# ---------------------------------------------------------------- learning (defaults, seed 1)
@pytest.mark.learning
@pytest.mark.parametrize("stem", ["reinforce_cartpole", "actor_critic_cartpole", "ppo_cartpole"])
def test_reaches_the_cartpole_threshold(stem, runs_dir):
    summary = run_algo(stem, ["--seed", "1"], runs_dir)
    assert summary["eval_return_mean"] >= 475.0, summary
