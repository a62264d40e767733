"""Continuous actor-critic family (ddpg_pendulum, sac_pendulum, and cql_pendulum's SAC): mechanisms and learning.

soft_update at tau = 0 and 1, the TD targets at a terminated and a truncated transition, the
tanh-squashed log-probability against torch.distributions and a numerical integral, which
networks score the target and how far the targets trail, the temperature's direction, the
--save-buffer dataset, and (marked learning) the documented threshold from the defaults.
"""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_algo, run_algo, smoke_args

STEMS = ["ddpg_pendulum", "sac_pendulum"]
SAC_LIKE = ["sac_pendulum", "cql_pendulum"]  # cql_pendulum shares SAC's parts byte for byte
DATASET_KEYS = ["observations", "actions", "rewards", "next_observations", "terminations"]


def networks(module, seed: int = 0):
    torch.manual_seed(seed)
    low, high = np.array([-2.0], dtype=np.float32), np.array([2.0], dtype=np.float32)
    extra = ((-5.0, 2.0),) if hasattr(module, "squashed_log_prob") else ()
    actor = module.Actor(3, 1, 16, low, high, *extra)
    critic = module.Critic(3, 1, 16, num_critics=2)
    return actor, critic


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum"])
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


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum"])
def test_td_target_bootstraps_through_truncation_only(stem):
    """terminations = 1 (true terminal state): y = r. terminations = 0 (a time-limit truncation,
    the only way a Pendulum episode ends): y = r + gamma * V(s'), V from the target networks."""
    module = load_algo(stem)
    actor, critic = networks(module)
    rewards = torch.tensor([-1.0, -2.0])
    next_obs = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -3.0]])
    gamma, alpha = 0.9, 0.2
    sac = stem in SAC_LIKE

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


# ---------------------------------------------------------------- the update: targets, their lag, the temperature
def update_args(module, **extra):
    return SimpleNamespace(gamma=0.9, tau=0.25, cql_num_actions=2, **extra)


def parts(module, seed: int = 0):
    """Online and target networks that differ, two optimizers, a random batch of 8 transitions."""
    actor, critic = networks(module, seed)
    target_actor, target_critic = networks(module, seed + 1)
    log_alpha = torch.tensor(math.log(0.2), requires_grad=True)
    q_opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    actor_opt = torch.optim.Adam([{"params": list(actor.parameters())}, {"params": [log_alpha]}], lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    batch = [
        torch.randn(8, 3, generator=g), torch.rand(8, 1, generator=g) * 4 - 2, -torch.rand(8, generator=g),
        torch.randn(8, 3, generator=g), torch.zeros(8),
    ]  # fmt: skip
    return actor, critic, target_actor, target_critic, log_alpha, (q_opt, actor_opt), batch


def call_update(module, stem, actor, critic, target_actor, target_critic, log_alpha, optimizers, batch):
    if stem == "ddpg_pendulum":
        return module.update(
            actor, critic, target_actor, target_critic, optimizers, batch, update_args(module)
        )
    extra = (0.0,) if stem == "cql_pendulum" else ()
    return module.update(
        actor, critic, target_critic, log_alpha, optimizers, batch, update_args(module), *extra
    )


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum"])
def test_update_scores_the_target_with_the_target_networks(stem, monkeypatch):
    """DDPG: Q_target(s', mu_target(s')). SAC: min_i Q_target_i(s', a'), a' from the CURRENT actor."""
    module = load_algo(stem)
    actor, critic, target_actor, target_critic, log_alpha, optimizers, batch = parts(module)
    seen = []
    real = module.td_target
    monkeypatch.setattr(module, "td_target", lambda a, c, *rest: seen.append((a, c)) or real(a, c, *rest))
    call_update(module, stem, actor, critic, target_actor, target_critic, log_alpha, optimizers, batch)
    assert len(seen) == 1
    used_actor, used_critic = seen[0]
    assert used_critic is target_critic, "the TD target must come from the target critic"
    assert used_actor is (target_actor if stem == "ddpg_pendulum" else actor)


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum"])
def test_update_moves_every_target_by_tau_after_the_step(stem):
    """theta_target <- tau * theta (after this step) + (1 - tau) * theta_target, for each target network."""
    module = load_algo(stem)
    actor, critic, target_actor, target_critic, log_alpha, optimizers, batch = parts(module)
    pairs = [(target_critic, critic)] + ([(target_actor, actor)] if stem == "ddpg_pendulum" else [])
    params = lambda net: [p.detach().clone() for p in net.parameters()]  # noqa: E731
    before = [(params(target), params(online)) for target, online in pairs]
    call_update(module, stem, actor, critic, target_actor, target_critic, log_alpha, optimizers, batch)
    for (target, online), (target_old, online_old) in zip(pairs, before):
        for new, old, theta, theta_old in zip(
            target.parameters(), target_old, online.parameters(), online_old
        ):
            assert not torch.equal(theta, theta_old), "the online network did not learn"
            torch.testing.assert_close(new, 0.25 * theta + 0.75 * old)


def test_ddpg_main_keeps_separate_lagging_targets(monkeypatch, runs_dir):
    """In a run, the targets are other modules than the online networks, and they trail them."""
    module = load_algo("ddpg_pendulum")
    calls = []
    real = module.update
    monkeypatch.setattr(module, "update", lambda *a: calls.append(a[:4]) or real(*a))
    module.main(
        module.tyro.cli(module.Args, args=[*smoke_args("ddpg_pendulum"), "--runs-dir", str(runs_dir)])
    )
    actor, critic, target_actor, target_critic = calls[-1]
    assert target_actor is not actor and target_critic is not critic
    for target, online in ((target_actor, actor), (target_critic, critic)):
        assert any(not torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


@pytest.mark.parametrize("stem", SAC_LIKE)
@pytest.mark.parametrize("log_std, direction", [(0.0, -1), (-5.0, +1)])
def test_temperature_moves_towards_the_target_entropy(stem, log_std, direction):
    """Target entropy -dim(A) = -1 nat. A wide policy (log sigma 0: entropy about +1.2 nats) must lower
    alpha; a narrow one (log sigma -5: about -2.9 nats) must raise it (J(alpha) = -log alpha (log pi + H))."""
    module = load_algo(stem)
    actor, critic, target_actor, target_critic, log_alpha, optimizers, batch = parts(module)
    last = actor.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, log_std]))  # mean 0, log sigma fixed for every state
    before = log_alpha.item()
    call_update(module, stem, actor, critic, target_actor, target_critic, log_alpha, optimizers, batch)
    assert (log_alpha.item() - before) * direction > 0, (before, log_alpha.item())


def test_sac_twin_critics_take_the_minimum_in_the_actor_loss():
    """The actor climbs min_i Q_i(s, a): with the second critic far below the first, its loss follows it."""
    module = load_algo("sac_pendulum")
    actor, critic, target_actor, target_critic, log_alpha, optimizers, batch = parts(module)
    with torch.no_grad():
        critic.biases[-1][1].fill_(-100.0)  # critic 1 = critic 0's shape - 100 (its own weights aside)
        critic.weights[-1][1].zero_()
        critic.weights[-1][0].zero_()
        critic.biases[-1][0].fill_(0.0)
    losses = call_update(
        module, "sac_pendulum", actor, critic, target_actor, target_critic, log_alpha, optimizers, batch
    )
    assert losses["actor_loss"].item() > 90.0, losses["actor_loss"]  # -min_i Q_i = +100, not -mean = +50


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
