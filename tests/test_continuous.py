"""Continuous actor-critic family (ddpg_pendulum, sac_pendulum): pure functions and learning.

soft_update at tau = 0 and 1, the TD targets at a terminated and a truncated transition, the
tanh-squashed log-probability against torch.distributions and a numerical integral, the
--save-buffer dataset, and (marked learning) the documented threshold from the defaults.
"""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import load_algo, run_algo, smoke_args

STEMS = ["ddpg_pendulum", "sac_pendulum"]
DATASET_KEYS = ["observations", "actions", "rewards", "next_observations", "terminations"]


def networks(module, seed: int = 0):
    torch.manual_seed(seed)
    low, high = np.array([-2.0], dtype=np.float32), np.array([2.0], dtype=np.float32)
    extra = ((-5.0, 2.0),) if hasattr(module, "squashed_log_prob") else ()
    actor = module.Actor(3, 1, 16, low, high, *extra)
    critic = module.Critic(3, 1, 16, num_critics=2)
    return actor, critic


@pytest.mark.parametrize("stem", STEMS)
def test_soft_update_tau_0_keeps_and_tau_1_copies(stem):
    module = load_algo(stem)
    _, source = networks(module, seed=0)
    _, target = networks(module, seed=1)
    before = copy.deepcopy(target.state_dict())
    module.soft_update(target, source, tau=0.0)
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), key
    module.soft_update(target, source, tau=1.0)
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    _, target = networks(module, seed=1)
    module.soft_update(target, source, tau=0.25)
    for key, value in target.state_dict().items():
        expected = 0.25 * source.state_dict()[key] + 0.75 * before[key]
        torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("stem", STEMS)
def test_td_target_bootstraps_through_truncation_only(stem):
    """terminations = 1 (true terminal state): y = r. terminations = 0 (a time-limit truncation,
    the only way a Pendulum episode ends): y = r + gamma * V(s'), V from the target networks."""
    module = load_algo(stem)
    actor, critic = networks(module)
    rewards = torch.tensor([-1.0, -2.0])
    next_obs = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -3.0]])
    gamma, alpha = 0.9, 0.2
    sac = stem == "sac_pendulum"

    def target(terminations):
        torch.manual_seed(7)  # SAC samples a' ~ pi(.|s'): the same draw in both calls
        extra = (alpha,) if sac else ()
        return module.td_target(actor, critic, rewards, next_obs, terminations, gamma, *extra)

    torch.testing.assert_close(target(torch.tensor([1.0, 1.0])), rewards)
    with torch.no_grad():
        torch.manual_seed(7)
        if sac:
            next_actions, log_prob = actor(next_obs)
            value = critic(next_obs, next_actions).min(dim=0).values - alpha * log_prob
        else:
            value = critic(next_obs, actor(next_obs))[0]
    truncated = target(torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(truncated, rewards + gamma * value)
    assert not torch.allclose(truncated, rewards)
    mixed = target(torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mixed, torch.stack([rewards[0], rewards[1] + gamma * value[1]]))


def test_squashed_log_prob_matches_torch_transformed_distribution():
    """a = scale * tanh(u) + bias with unequal scales: the log(scale) term must be there."""
    module = load_algo("sac_pendulum")
    torch.manual_seed(0)
    mean, log_std = torch.randn(64, 2), torch.rand(64, 2) * 2 - 1.5
    scale, bias = torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])
    u = mean + log_std.exp() * torch.randn(64, 2)
    action = scale * torch.tanh(u) + bias
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform(cache_size=1), torch.distributions.AffineTransform(bias, scale)],
    )
    expected = reference.log_prob(action).sum(dim=-1)
    torch.testing.assert_close(
        module.squashed_log_prob(u, mean, log_std, scale), expected, atol=1e-4, rtol=1e-4
    )


def test_squashed_density_integrates_to_one_over_the_action_bounds():
    """Numerically: exp(log pi(a)) integrates to 1 over a in [-2, 2]; without log(scale) it would be 2."""
    module = load_algo("sac_pendulum")
    scale = torch.tensor([2.0], dtype=torch.float64)
    u = torch.linspace(-12, 12, 200001, dtype=torch.float64)[:, None]  # [K, 1]
    mean, log_std = torch.full_like(u, 0.4), torch.full_like(u, -0.3)
    density = module.squashed_log_prob(u, mean, log_std, scale).exp()  # [K]
    action = (scale * torch.tanh(u))[:, 0]  # [K], increasing in u
    mass = torch.trapezoid(density, action).item()
    assert math.isclose(mass, 1.0, abs_tol=1e-3), mass


def test_actions_stay_inside_the_bounds():
    module = load_algo("sac_pendulum")
    actor, _ = networks(module)
    obs = torch.randn(4096, 3) * 10
    for deterministic in (True, False):
        action = actor.act(obs, deterministic=deterministic)
        assert action.shape == (4096, 1) and action.abs().max() <= 2.0


@pytest.mark.parametrize("stem", STEMS)
def test_save_buffer_writes_the_offline_dataset(stem, runs_dir):
    summary = run_algo(stem, [*smoke_args(stem), "--save-buffer"], runs_dir)
    with np.load(f"{summary['run_dir']}/buffer.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(DATASET_KEYS)
        n = summary["total_steps"]
        shapes = {key: data[key].shape for key in DATASET_KEYS}
        assert shapes == {
            "observations": (n, 3), "actions": (n, 1), "rewards": (n,),
            "next_observations": (n, 3), "terminations": (n,),
        }  # fmt: skip
        assert all(data[key].dtype == np.float32 for key in DATASET_KEYS)
        assert np.abs(data["actions"]).max() <= 2.0
        # Pendulum only truncates: nothing is marked terminal, and the transition that crosses the
        # 200-step limit keeps its own final observation, not the next episode's first one.
        assert not data["terminations"].any()
        obs, next_obs = data["observations"], data["next_observations"]
        same = np.all(next_obs[:-1] == obs[1:], axis=1)  # [n - 1]
        assert not same[199] and same[:199].all() and same[200:].all()


def test_sac_fixed_alpha_stays_fixed(runs_dir):
    summary = run_algo(
        "sac_pendulum", [*smoke_args("sac_pendulum"), "--no-autotune", "--alpha", "0.05"], runs_dir
    )
    assert summary["alpha"] == pytest.approx(0.05)
    tuned = run_algo("sac_pendulum", smoke_args("sac_pendulum"), runs_dir)
    assert tuned["alpha"] != pytest.approx(0.2)


# ---------------------------------------------------------------- learning (documented thresholds)
@pytest.mark.learning
@pytest.mark.parametrize("stem", STEMS)
def test_reaches_minus_200_within_20k_steps(stem, runs_dir):
    """Defaults (20000 environment steps), seed 1: deterministic evaluation over 10 episodes >= -200."""
    summary = run_algo(stem, ["--seed", "1"], runs_dir)
    assert summary["total_steps"] <= 20000
    assert summary["eval_return_mean"] >= -200.0, summary
