"""Continuous actor-critic family (ddpg_pendulum, td3_pendulum, sac_pendulum, and cql_pendulum's SAC): mechanisms and learning.

soft_update at tau = 0 and 1, the TD targets at a terminated and a truncated transition, the
tanh-squashed log-probability against torch.distributions and a numerical integral, which
networks score the target and how far the targets trail, the temperature's direction, TD3's twin-critic
minimum, clipped target smoothing and delayed actor updates, the --save-buffer dataset, and (marked
learning) the documented threshold from the defaults.
"""

import copy
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import load_algo, run_algo, smoke_args

STEMS = ["ddpg_pendulum", "sac_pendulum", "td3_pendulum"]
TARGET_ACTOR = ["ddpg_pendulum", "td3_pendulum"]  # deterministic actors with a Polyak target actor
SAC_LIKE = ["sac_pendulum", "cql_pendulum"]  # cql_pendulum shares SAC's parts byte for byte
DISCRETE = "sac_discrete_cartpole"  # SAC for discrete actions: 4 observations, 2 actions on CartPole
DATASET_KEYS = ["observations", "actions", "rewards", "next_observations", "terminations"]


def networks(module, seed: int = 0):
    torch.manual_seed(seed)
    if module.Args.env_id == "CartPole-v1":  # discrete SAC: a categorical actor and Q(s, .) critics
        return module.Actor(4, 2, 16), module.Critic(4, 2, 16, num_critics=2)
    low, high = np.array([-2.0], dtype=np.float32), np.array([2.0], dtype=np.float32)
    extra = ((-5.0, 2.0),) if hasattr(module, "squashed_log_prob") else ()
    actor = module.Actor(3, 1, 16, low, high, *extra)
    critic = module.Critic(3, 1, 16, num_critics=2)
    return actor, critic


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum", DISCRETE])
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
        extra = (alpha,) if sac else (0.0, 0.0) if stem == "td3_pendulum" else ()  # TD3: no smoothing here
        return module.td_target(actor, critic, rewards, next_obs, terminations, gamma, *extra)

    torch.testing.assert_close(target(torch.tensor([1.0, 1.0])), rewards)
    with torch.no_grad():
        torch.manual_seed(7)
        if sac:
            next_actions, log_prob = actor(next_obs)
            value = critic(next_obs, next_actions).min(dim=0).values - alpha * log_prob
        elif stem == "td3_pendulum":
            value = critic(next_obs, actor(next_obs)).min(dim=0).values
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
    td3 = dict(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)
    return SimpleNamespace(gamma=0.9, tau=0.25, cql_num_actions=2, target_entropy_scale=0.5, **td3 | extra)


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
    if module.Args.env_id == "CartPole-v1":  # discrete SAC: 4 observations, actions 0 and 1 both taken
        batch[0], batch[3] = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
        batch[1] = torch.arange(8.0) % 2  # [B] indices stored as floats, as in the replay buffer
    return actor, critic, target_actor, target_critic, log_alpha, (q_opt, actor_opt), batch


def call_update(module, stem, actor, critic, target_actor, target_critic, log_alpha, optimizers, batch):
    if stem == "td3_pendulum":  # critic step 2 = policy_delay: the actor and both targets move too
        return module.update(
            actor, critic, target_actor, target_critic, optimizers, batch, update_args(module), 2
        )
    if stem == "ddpg_pendulum":
        return module.update(
            actor, critic, target_actor, target_critic, optimizers, batch, update_args(module)
        )
    extra = (0.0,) if stem == "cql_pendulum" else ()
    return module.update(
        actor, critic, target_critic, log_alpha, optimizers, batch, update_args(module), *extra
    )


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum", DISCRETE])
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
    assert used_actor is (target_actor if stem in TARGET_ACTOR else actor)


@pytest.mark.parametrize("stem", STEMS + ["cql_pendulum", DISCRETE])
def test_update_moves_every_target_by_tau_after_the_step(stem):
    """theta_target <- tau * theta (after this step) + (1 - tau) * theta_target, for each target network."""
    module = load_algo(stem)
    actor, critic, target_actor, target_critic, log_alpha, optimizers, batch = parts(module)
    pairs = [(target_critic, critic)] + ([(target_actor, actor)] if stem in TARGET_ACTOR else [])
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


# ---------------------------------------------------------------- TD3: twin minimum, target smoothing, delay
def recorded_target_actions(module, actor, obs, noise: float, clip: float) -> torch.Tensor:
    """The actions td_target hands to the critics (a stand-in critic records them and returns Q = 0)."""
    seen = []
    critic = lambda o, a: seen.append(a.clone()) or torch.zeros(2, len(o))  # noqa: E731
    module.td_target(actor, critic, torch.zeros(len(obs)), obs, torch.zeros(len(obs)), 0.9, noise, clip)
    return seen[0]


def constant_actor(module, mean_action: float):
    """An actor whose mu(s) is the same for every state (bounds [-2, 2], half-range 2)."""
    actor, _ = networks(module)
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.fill_(math.atanh(mean_action / 2.0) if abs(mean_action) < 2.0 else 20.0)
    return actor


def test_td3_target_takes_the_minimum_of_the_twin_target_critics():
    """Clipped double Q: y = r + gamma * min(Q'_1, Q'_2), whichever of the two is lower, never the max or Q'_1."""
    module = load_algo("td3_pendulum")
    actor, critic = networks(module)
    rewards, next_obs, terminations = torch.tensor([-1.0, -2.0]), torch.randn(2, 3), torch.zeros(2)
    for low in (0, 1):
        with torch.no_grad():
            for i in (0, 1):
                critic.weights[-1][i].zero_()
                critic.biases[-1][i].fill_(-100.0 if i == low else 5.0)  # Q'_low = -100, the other +5
        y = module.td_target(actor, critic, rewards, next_obs, terminations, 0.9, 0.2, 0.5)
        torch.testing.assert_close(y, rewards + 0.9 * -100.0)
    _, critic = networks(module, seed=3)  # random critics: the elementwise minimum, state by state
    next_obs = torch.randn(64, 3)
    y = module.td_target(actor, critic, torch.zeros(64), next_obs, torch.zeros(64), 1.0, 0.0, 0.0)
    with torch.no_grad():
        q = critic(next_obs, actor(next_obs))  # [2, 64]
    assert (q[0] < q[1]).any() and (q[1] < q[0]).any()
    torch.testing.assert_close(y, q.min(dim=0).values)


def test_td3_target_smoothing_is_clipped_gaussian_noise_in_half_range_units():
    """a~ = clip(mu'(s') + clip(eps, -c, c) * scale, low, high), eps ~ N(0, sigma~^2), scale = 2 on Pendulum."""
    module = load_algo("td3_pendulum")
    obs = torch.randn(20000, 3)
    torch.manual_seed(0)
    actor = constant_actor(module, 0.0)  # mu = 0: the bounds (+-2) are out of the noise's reach
    noise = recorded_target_actions(module, actor, obs, noise=0.2, clip=0.5)[:, 0]  # [K] a~ - mu
    assert abs(noise.mean().item()) < 0.02
    assert 0.38 < noise.std().item() < 0.41, noise.std()  # sigma~ * scale = 0.4 (clip at 2.5 sigma: ~0.397)
    assert noise.abs().max().item() <= 1.0 + 1e-6  # c * scale
    assert len(noise.unique()) > 19000, "one fresh draw per transition"
    wide = recorded_target_actions(module, actor, obs, noise=1.0, clip=0.3)[:, 0]  # sigma~ > c: clip binds
    assert wide.abs().max().item() <= 0.6 + 1e-6
    assert (wide.abs() > 0.6 - 1e-6).float().mean().item() > 0.7  # P(|eps| > c) = 0.76 land on +-c
    edge = recorded_target_actions(module, constant_actor(module, 2.0), obs, noise=0.2, clip=0.5)
    assert edge.max().item() <= 2.0 and edge.min().item() >= 1.0 - 1e-6  # mu = 2: kept inside the bounds
    assert (edge == 2.0).float().mean().item() > 0.4 and (edge < 2.0).any()


@pytest.mark.parametrize("delay", [1, 3])
def test_td3_actor_and_targets_move_every_policy_delay_critic_steps(delay):
    """Critic steps 1..6: the critics learn at every one; the actor and both targets only at steps d, 2d, ..."""
    module = load_algo("td3_pendulum")
    actor, critic, target_actor, target_critic, _, optimizers, batch = parts(module)
    args = update_args(module, **{"policy_delay": delay})
    snapshot = lambda net: [p.detach().clone() for p in net.parameters()]  # noqa: E731
    moved = lambda net, old: any(not torch.equal(p, o) for p, o in zip(net.parameters(), old))  # noqa: E731
    nets = dict(actor=actor, critic=critic, target_actor=target_actor, target_critic=target_critic)
    for step in range(1, 7):
        before = {name: snapshot(net) for name, net in nets.items()}
        losses = module.update(actor, critic, target_actor, target_critic, optimizers, batch, args, step)
        delayed = step % delay == 0
        assert moved(critic, before["critic"]), step
        for name in ("actor", "target_actor", "target_critic"):
            assert moved(nets[name], before[name]) == delayed, (step, name)
        assert ("actor_loss" in losses) == delayed, step


def test_td3_main_uses_twin_critics_and_counts_critic_steps(monkeypatch, runs_dir):
    """A run builds two critics, keeps separate lagging targets, and numbers the critic steps 1, 2, 3, ..."""
    module = load_algo("td3_pendulum")
    calls = []
    real = module.update
    monkeypatch.setattr(module, "update", lambda *a: calls.append((*a[:4], a[-1])) or real(*a))
    argv = [*smoke_args("td3_pendulum"), "--runs-dir", str(runs_dir), "--no-progress"]
    summary = module.main(module.tyro.cli(module.Args, args=argv))
    assert [c[-1] for c in calls] == list(range(1, summary["num_updates"] + 1))
    actor, critic, target_actor, target_critic, _ = calls[-1]
    assert critic.weights[0].shape[0] == 2 and target_critic.weights[0].shape[0] == 2, "twin critics"
    assert target_actor is not actor and target_critic is not critic
    for target, online in ((target_actor, actor), (target_critic, critic)):
        assert any(not torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


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


# ---------------------------------------------------------------- discrete SAC: expectations over the actions
def discrete_parts(q_lr: float = 1e-2):
    """parts() of discrete SAC with the second critic of each pair 1 above its own output (min, mean and max
    then differ) and alpha = 0.5 (the entropy term is not small beside Q)."""
    module = load_algo(DISCRETE)
    actor, critic, _, target_critic, log_alpha, optimizers, batch = parts(module)
    with torch.no_grad():
        for net in (critic, target_critic):
            net.biases[-1][1] += 1.0  # [N, 1, A]
        log_alpha.fill_(math.log(0.5))
    optimizers[0].param_groups[0]["lr"] = q_lr
    return module, actor, critic, target_critic, log_alpha, optimizers, batch


def soft_values(actor, critic, obs, alpha: float) -> torch.Tensor:
    """sum_a pi(a|s) (min_i Q_i(s, a) - alpha log pi(a|s)), written out state by state, action by action."""
    with torch.no_grad():
        logits, q = actor.net(obs), critic(obs)  # [B, A], [N, B, A]
    values = []
    for b in range(len(obs)):
        p = torch.softmax(logits[b], dim=0)
        values.append(sum(p[a] * (q[:, b, a].min() - alpha * p[a].log()) for a in range(len(p))))
    return torch.stack(values)  # [B]


def test_sac_discrete_networks_give_every_action_and_a_distribution():
    _, actor, critic, *_ = discrete_parts()
    obs = torch.randn(5, 4)
    q = critic(obs)
    assert q.shape == (2, 5, 2), "[N, B, A]: both critics, every action"
    assert not torch.allclose(q[0], q[1] - 1.0), "the twin critics have weights of their own"
    prob, log_prob = actor(obs)
    assert prob.shape == log_prob.shape == (5, 2)
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(log_prob, torch.log_softmax(actor.net(obs), dim=1))


def test_sac_discrete_td_target_is_the_expectation_over_actions():
    """y = r + gamma (1 - term) sum_a' pi(a'|s') (min_i Q'_i(s', a') - alpha log pi(a'|s')): every action weighed
    by pi and none sampled (the same y on every call), the entropy term in, the lower critic. A truncation
    (term = 0) keeps the bootstrap, CartPole's fall (term = 1) leaves y = r."""
    module, actor, _, target_critic, *_ = discrete_parts()
    rewards, next_obs, gamma, alpha = torch.tensor([1.0, 1.0, 0.0]), torch.randn(3, 4), 0.9, 0.5
    value = soft_values(actor, target_critic, next_obs, alpha)  # [B]

    def target(terminations):
        return module.td_target(actor, target_critic, rewards, next_obs, terminations, gamma, alpha)

    truncated = target(torch.zeros(3))
    torch.testing.assert_close(truncated, rewards + gamma * value)
    for _ in range(5):
        torch.testing.assert_close(target(torch.zeros(3)), truncated)
    torch.testing.assert_close(target(torch.ones(3)), rewards)
    mixed = target(torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(mixed, torch.stack([rewards[0], truncated[1], rewards[2]]))


def test_sac_discrete_losses_weigh_every_action_by_pi():
    """Critics: sum_i mean (Q_i(s, a_taken) - y)^2. Actor: mean_s sum_a pi(a|s) (alpha log pi(a|s) - min_i Q_i(s, a)),
    the exact expectation (the critics' step size is 0 here, so the actor's loss sees the same critics)."""
    module, actor, critic, target_critic, log_alpha, optimizers, batch = discrete_parts(q_lr=0.0)
    obs, actions, rewards, next_obs, terminations = batch
    alpha = log_alpha.exp().item()
    with torch.no_grad():
        prob, log_prob = torch.softmax(actor.net(obs), 1), torch.log_softmax(actor.net(obs), 1)  # [B, A]
        q_all = critic(obs)  # [N, B, A]
        q_taken = torch.stack([q_all[:, b, int(actions[b])] for b in range(len(obs))], dim=1)  # [N, B]
        y = module.td_target(actor, target_critic, rewards, next_obs, terminations, 0.9, alpha)  # [B]
        q_loss = ((q_taken - y) ** 2).mean(dim=1).sum()
        actor_loss = (prob * (alpha * log_prob - q_all.min(dim=0).values)).sum(dim=1).mean()
    losses = module.update(actor, critic, target_critic, log_alpha, optimizers, batch, update_args(module))
    torch.testing.assert_close(losses["q_loss"].detach(), q_loss)
    torch.testing.assert_close(losses["actor_loss"].detach(), actor_loss)


def logit_with_entropy(entropy: float) -> float:
    """b > 0 with H(softmax([0, b])) = entropy nats, by bisection (H falls from log 2 as b grows)."""
    low, high = 0.0, 30.0
    for _ in range(100):
        b = (low + high) / 2
        p = torch.sigmoid(torch.tensor(b, dtype=torch.float64))
        low, high = (b, high) if -(p * p.log() + (1 - p) * (1 - p).log()) > entropy else (low, b)
    return (low + high) / 2


@pytest.mark.parametrize("scale", [0.5, 0.8])
@pytest.mark.parametrize("offset, direction", [(+0.02, -1), (-0.02, +1)])
def test_sac_discrete_temperature_moves_towards_scale_log_a(scale, offset, direction):
    """H_target = scale * log(A) nats (SAC's -dim(A) would be no target for a categorical policy): a policy 0.02
    nats above it must lower alpha, one 0.02 below must raise it; J(alpha) = -log alpha (E_a log pi + H_target)."""
    module, actor, critic, target_critic, log_alpha, optimizers, batch = discrete_parts()
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.copy_(torch.tensor([0.0, logit_with_entropy(scale * math.log(2) + offset)]))
    before = log_alpha.item()
    args = update_args(module)
    args.target_entropy_scale = scale
    module.update(actor, critic, target_critic, log_alpha, optimizers, batch, args)
    assert (log_alpha.item() - before) * direction > 0, (before, log_alpha.item())


@pytest.mark.parametrize("num_critics", [1, 2])
def test_sac_discrete_num_critics_sets_the_minimum_of_target_and_actor(num_critics):
    """--num-critics N builds N critics (and N targets); with 1 the clipped double Q is off: the target is
    r + gamma sum_a' pi(a'|s') (Q'(s', a') - alpha log pi(a'|s')) of the one critic. 0 is refused."""
    module = load_algo(DISCRETE)
    args = module.Args(num_critics=num_critics)
    actor, critic, target_critic, *_ = module.make_agent(args, gym.make("CartPole-v1"), torch.device("cpu"))
    next_obs, rewards = torch.randn(5, 4), torch.ones(5)
    assert critic(next_obs).shape == target_critic(next_obs).shape == (num_critics, 5, 2)
    y = module.td_target(actor, target_critic, rewards, next_obs, torch.zeros(5), 0.9, 0.5)
    torch.testing.assert_close(y, rewards + 0.9 * soft_values(actor, target_critic, next_obs, 0.5))
    with pytest.raises(SystemExit, match="--num-critics"):
        module.check_algo_args(module.Args(num_critics=0))


def test_sac_discrete_acts_by_argmax_to_evaluate_and_samples_pi_to_explore():
    module = load_algo(DISCRETE)
    actor, _ = networks(module)
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # pi = (1/4, 3/4) in every state
    obs = torch.randn(20000, 4)
    greedy = actor.act(obs, deterministic=True)
    assert greedy.dtype == torch.int64 and greedy.shape == (20000,) and (greedy == 1).all()
    torch.manual_seed(0)
    sampled = actor.act(obs, deterministic=False)
    assert sampled.shape == (20000,) and abs(sampled.float().mean().item() - 0.75) < 0.02


def test_sac_discrete_buffer_marks_falls_not_time_limits(monkeypatch, runs_dir):
    """With a 20-step time limit many episodes are truncated: only a fall (pole past 12 degrees, cart past 2.4)
    is stored as a termination, and each episode's last transition keeps its own final observation."""
    module = load_algo(DISCRETE)

    def make_env(args, render_mode=None):
        env = module.gym.make(args.env_id, render_mode=render_mode, max_episode_steps=20)
        return module.gym.wrappers.RecordEpisodeStatistics(env)

    monkeypatch.setattr(module, "make_env", make_env)
    argv = [*smoke_args(DISCRETE), "--save-buffer", "--runs-dir", str(runs_dir), "--no-progress"]
    summary = module.main(module.tyro.cli(module.Args, args=argv))
    with np.load(f"{summary['run_dir']}/buffer.npz", allow_pickle=False) as data:
        data = {key: data[key] for key in DATASET_KEYS}
    obs, actions, next_obs, terminations = (data[k] for k in DATASET_KEYS if k != "rewards")
    assert actions.shape == terminations.shape == (summary["total_steps"],)
    assert set(np.unique(actions)) == {0.0, 1.0}
    fell = (np.abs(next_obs[:, 0]) > 2.4) | (np.abs(next_obs[:, 2]) > 12 * 2 * math.pi / 360)  # [n]
    np.testing.assert_array_equal(terminations == 1.0, fell)
    ends = ~np.all(next_obs[:-1] == obs[1:], axis=1)  # [n - 1]: an episode ended at step i
    ended_by_fall = fell[:-1][ends]  # at each episode's end: a fall (True) or the time limit (False)
    assert ended_by_fall.any() and not ended_by_fall.all(), "the run must see falls and time limits"
    assert not (fell[:-1] & ~ends).any(), "a fall always ends the episode"


@pytest.mark.learning
def test_sac_discrete_reaches_475_on_cartpole(runs_dir):
    """Seed 1, half the default budget with targets 4x faster (--tau 0.02, 20000 steps; the defaults, tau 0.005
    and 40000 steps, take twice the time): greedy (argmax pi) evaluation over 10 episodes >= 475."""
    summary = run_algo(DISCRETE, ["--seed", "1", "--tau", "0.02", "--total-steps", "20000"], runs_dir)
    assert summary["eval_return_mean"] >= 475.0, summary


# ---------------------------------------------------------------- learning (documented thresholds)
@pytest.mark.learning
@pytest.mark.parametrize("stem", STEMS)
def test_reaches_minus_200_within_20k_steps(stem, runs_dir):
    """Defaults (20000 environment steps; td3_pendulum 15000), seed 1: deterministic evaluation over 10
    episodes >= -200."""
    summary = run_algo(stem, ["--seed", "1"], runs_dir)
    assert summary["total_steps"] <= 20000
    assert summary["eval_return_mean"] >= -200.0, summary
