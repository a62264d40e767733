"""Value-based deep family: the TD targets (terminated vs truncated), Double DQN's decoupling, the dueling
head, what the loop stores in the replay buffer at a termination and at a truncation, the lagging target
network, epsilon-greedy acting, and learning. The fast tests here are the ones tests/sabotage/<stem>.toml
names."""

import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import load_algo, run_algo, smoke_args

STEMS = ["dqn_cartpole", "dqn_pendulum", "ddqn_pendulum", "dueling_dqn_pendulum"]
PENDULUMS = ["dqn_pendulum", "ddqn_pendulum", "dueling_dqn_pendulum"]
# Short time limits, so that a few hundred steps hold terminations (CartPole falls) and truncations (both).
SHORT = {"dqn_cartpole": ("ShortCartPole-v1", "cartpole:CartPoleEnv", 20)}
SHORT |= dict.fromkeys(PENDULUMS, ("ShortPendulum-v1", "pendulum:PendulumEnv", 15))
for env_id, entry_point, limit in SHORT.values():
    if env_id not in gym.registry:
        gym.register(env_id, f"gymnasium.envs.classic_control.{entry_point}", max_episode_steps=limit)


class FixedQ(nn.Module):
    """A 'network' that returns fixed Q-values for every observation: [B, O] -> [B, A]."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, obs):  # one row of values for all observations, or one row per observation
        return self.values.expand(len(obs), -1) if self.values.dim() == 1 else self.values[: len(obs)]


def batch():
    """Two transitions with the same reward: one terminated, one truncated by the time limit.

    A truncated transition is stored with termination 0 (the main loop passes `terminations`, never
    `terminations | truncations`), so its target must bootstrap from the final observation.
    """
    rewards = torch.tensor([1.0, 1.0])
    next_obs = torch.zeros(2, 3)
    terminations = torch.tensor([1.0, 0.0])  # [terminated, truncated]
    return rewards, next_obs, terminations


def run_module(module, argv: list[str], runs_dir) -> dict:
    """Like conftest.run_algo, on a module the test has already patched."""
    import tyro

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return module.main(tyro.cli(module.Args, args=[*argv, "--runs-dir", str(runs_dir), "--no-progress"]))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def record_networks(module) -> list:
    """Patch the module's QNetwork so that every network main() makes is kept (the online one first)."""
    networks = []

    class RecordingQ(module.QNetwork):
        def __init__(self, *args):
            super().__init__(*args)
            networks.append(self)

    module.QNetwork = RecordingQ
    return networks


def record_buffers(module) -> list:
    """Patch the module's ReplayBuffer so that every buffer main() makes, and every add, is kept."""
    buffers = []

    class RecordingBuffer(module.ReplayBuffer):
        def __init__(self, *args):
            super().__init__(*args)
            self.adds = []
            buffers.append(self)

        def add(self, *transition):
            self.adds.append([np.array(x, copy=True) for x in transition])
            super().add(*transition)

    module.ReplayBuffer = RecordingBuffer
    return buffers


# ---------------------------------------------------------------- td_target
@pytest.mark.parametrize("stem", STEMS)
def test_td_target_terminated_vs_truncated(stem):
    module = load_algo(stem)
    q = FixedQ([2.0, 5.0, 3.0])
    target = FixedQ([2.0, 5.0, 3.0])
    y = module.td_target(q, target, *batch(), gamma=0.9)
    assert y[0].item() == pytest.approx(1.0), "a terminated transition must not bootstrap"
    assert y[1].item() == pytest.approx(1.0 + 0.9 * 5.0), "a truncated transition must bootstrap"


@pytest.mark.parametrize("stem", STEMS)
def test_td_target_uses_the_target_network(stem):
    """The online net prefers action 0 (9), the target net action 2 (7). DQN bootstraps from the target net
    alone: max_a' Q_target = 7. Double DQN lets the online net pick a' = 0 and the target net score it: 4.
    The online net's own values (9, 1, 0) appear in neither."""
    module = load_algo(stem)
    y = module.td_target(FixedQ([9.0, 1.0, 0.0]), FixedQ([4.0, 1.0, 7.0]), *batch(), gamma=0.9)
    assert y[0].item() == pytest.approx(1.0)
    assert y[1].item() == pytest.approx(1.0 + 0.9 * (4.0 if stem == "ddqn_pendulum" else 7.0))


def test_double_dqn_lets_the_online_net_choose():
    """Per next state, the online net picks a' and the target net scores it: rows prefer different actions.
    Online Q(s') = [[9, 1, 0], [0, 1, 9]] picks a' = 0, 2; the target net scores them 4 and 4. The target net
    picking (max_a' Q_target = 7, 7) would be plain DQN; the online net scoring (9, 9) would be over-estimated."""
    module = load_algo("ddqn_pendulum")
    online, target = FixedQ([[9.0, 1.0, 0.0], [0.0, 1.0, 9.0]]), FixedQ([[4.0, 1.0, 7.0], [7.0, 1.0, 4.0]])
    y = module.td_target(
        online, target, torch.tensor([1.0, 1.0]), torch.zeros(2, 3), torch.zeros(2), gamma=0.9
    )
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 4.0, 1.0 + 0.9 * 4.0])


@pytest.mark.parametrize("stem", STEMS)
def test_td_target_is_a_constant_to_the_gradient(stem):
    """Semi-gradient TD: the target y carries no gradient into either network."""
    module = load_algo(stem)
    torch.manual_seed(0)
    q, target = module.QNetwork(3, 4, 8), module.QNetwork(3, 4, 8)
    rewards, _, terminations = batch()
    y = module.td_target(q, target, rewards, torch.randn(2, 3), terminations, gamma=0.9)
    assert not y.requires_grad


# ---------------------------------------------------------------- the dueling head
def dueling_streams(batch_size=5, obs_dim=3, n_actions=4, hidden=8):
    """A freshly initialised dueling network, a batch of observations, and what its parts make of them."""
    module = load_algo("dueling_dqn_pendulum")
    torch.manual_seed(0)
    net = module.QNetwork(obs_dim, n_actions, hidden)
    obs = torch.randn(batch_size, obs_dim)
    with torch.no_grad():
        features = net.body(obs)  # [B, O] -> [B, h]
        return net, obs, features, net.value(features), net.advantage(features), net(obs)


def test_dueling_head_shapes():
    """One body [B, O] -> [B, h] feeds two streams: V(s) is one number per state, [B, 1], A(s, .) one per
    action, [B, A]; Q(s, .) is [B, A]. A loss on Q reaches both streams and the body."""
    net, obs, features, value, advantage, q = dueling_streams(batch_size=5, obs_dim=3, n_actions=4, hidden=8)
    assert features.shape == (5, 8) and value.shape == (5, 1) and advantage.shape == (5, 4)
    assert q.shape == (5, 4)
    net(obs)[:, 0].sum().backward()  # the value of one action only
    for name, part in (("value", net.value), ("advantage", net.advantage), ("body", net.body[0])):
        grad = part.weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient reaches the {name}"


def test_dueling_q_is_v_plus_centred_advantage():
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, eq. 9), per state: the mean of Q over
    the actions is V(s) itself, and Q - V is the advantage centred on zero over the actions. A freshly
    initialised network has V != 0 and mean_a A != 0 in every row, so Q = A - mean A (V dropped), Q = V + A
    (mean not subtracted) and a mean over the batch instead of the actions all fail."""
    _, _, _, value, advantage, q = dueling_streams()
    assert (value.abs() > 1e-3).all() and (advantage.mean(dim=1).abs() > 1e-3).all(), "a degenerate draw"
    centred = advantage - advantage.mean(dim=1, keepdim=True)  # [B, A]
    assert torch.allclose(q.mean(dim=1), value[:, 0], atol=1e-6), "mean_a Q(s, a) must be V(s)"
    assert torch.allclose(q - value, centred, atol=1e-6), "Q - V must be A - mean_a A"
    assert torch.equal(q.argmax(dim=1), advantage.argmax(dim=1)), "the greedy action is argmax_a A(s, a)"


def test_dueling_rows_are_independent():
    """Q(s, .) depends on s alone: each row of a batch equals the network on that observation by itself, so
    the mean is taken over the actions of one state, never over the states of a batch."""
    net, obs, *_, q = dueling_streams(batch_size=6)
    with torch.no_grad():
        alone = torch.cat([net(obs[i : i + 1]) for i in range(len(obs))])  # 6 x [1, A] -> [6, A]
    assert torch.allclose(q, alone, atol=1e-6), "a row of Q depends on the other states of the batch"


# ---------------------------------------------------------------- the training loop
@pytest.mark.parametrize("stem", STEMS)
def test_buffer_at_termination_and_truncation(stem, tmp_path):
    """Every stored transition is (s, a, r, s', terminated) exactly as one environment saw it: s' is the
    final observation of an episode that ended (never the next episode's reset), the flag is `terminated`
    only (a time-limit truncation stores 0), and s after an episode's end is the new episode's reset."""
    module = load_algo(stem)
    buffers, logs = record_buffers(module), []
    make_env = module.make_env

    class Recorder(gym.Wrapper):
        def reset(self, **kwargs):
            self.obs, info = self.env.reset(**kwargs)
            return self.obs, info

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.log.append((self.obs, int(action), float(reward), obs, terminated, truncated))
            self.obs = obs
            return obs, reward, terminated, truncated, info

    def recorded_env(args, render_mode=None):
        env = Recorder(make_env(args, render_mode))
        env.log = []
        logs.append(env.log)  # the vector env makes its E environments first, in order
        return env

    module.make_env = recorded_env
    env_id = SHORT[stem][0]
    run_module(module, [*smoke_args(stem), "--total-steps", "400", "--env-id", env_id], tmp_path)
    (rb,) = buffers
    num_envs = len(rb.adds[0][1])
    assert len(rb.adds) == 400 // num_envs
    ends = {"terminated": 0, "truncated": 0}
    for k, (obs, actions, rewards, next_obs, terminations) in enumerate(rb.adds):
        for i in range(num_envs):
            s, a, r, s_next, terminated, truncated = logs[i][k]
            assert np.array_equal(obs[i], s), f"step {k}: s is not the observation the action was taken in"
            assert actions[i] == a and rewards[i] == pytest.approx(r)
            assert np.array_equal(next_obs[i], s_next), (
                f"step {k}: s' is not the episode's own next observation"
            )
            assert terminations[i] == float(terminated), (
                f"step {k}: stored {terminations[i]}, terminated={terminated}"
            )
            ends["terminated"] += terminated
            ends["truncated"] += truncated and not terminated
    assert ends["truncated"] > 0, "the short time limit never truncated: the test proves nothing"
    if stem == "dqn_cartpole":
        assert ends["terminated"] > 0, "CartPole never fell: the test proves nothing"


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("tau, frequency", [(1.0, 5), (0.5, 3)])
def test_target_network_lags_then_copies(stem, tau, frequency, tmp_path):
    """theta_target starts as theta, stays put between updates (it lags the online net), and moves to
    tau * theta + (1 - tau) * theta_target after every `frequency` gradient updates (tau = 1: equal)."""
    module = load_algo(stem)
    td_target, calls = module.td_target, []

    def spy(q_network, target_network, *rest, **kwargs):
        snapshot = lambda net: [p.detach().clone() for p in net.parameters()]  # noqa: E731
        calls.append((snapshot(q_network), snapshot(target_network)))
        return td_target(q_network, target_network, *rest, **kwargs)

    module.td_target = spy
    argv = ["--tau", str(tau), "--target-network-frequency", str(frequency)]
    summary = run_module(module, [*smoke_args(stem), *argv], tmp_path)
    assert len(calls) == summary["num_updates"] > 2 * frequency
    expected = calls[0][0]  # call n comes after n gradient updates
    for n, (online, target) in enumerate(calls):
        if n > 0 and n % frequency == 0:  # update n was followed by a target update
            expected = [e + tau * (o - e) for e, o in zip(expected, online)]
        assert all(torch.allclose(t, e, atol=1e-6) for t, e in zip(target, expected)), f"target at update {n}"
        if tau == 1.0:
            same = all(torch.equal(t, o) for t, o in zip(target, online))
            assert same == (n % frequency == 0), (
                f"update {n}: target {'equals' if same else 'differs from'} online"
            )


@pytest.mark.parametrize("stem", STEMS)
def test_epsilon_greedy(stem, tmp_path):
    """epsilon = 0: every action is argmax_a Q(s, a) of the online network; epsilon = 1: uniform at random."""
    for epsilon in (0.0, 1.0):
        module = load_algo(stem)
        buffers, networks = record_buffers(module), record_networks(module)
        argv = ["--start-e", str(epsilon), "--end-e", str(epsilon), "--learning-starts", "1000000"]
        run_module(module, [*smoke_args(stem), *argv], tmp_path / str(epsilon))
        rb, online = buffers[0], networks[0]  # the online network is made first; no update changed it
        with torch.no_grad():
            greedy = online(torch.as_tensor(rb.obs[: rb.added])).argmax(dim=1).numpy()
        agree = np.mean(rb.actions[: rb.added] == greedy)
        if epsilon == 0.0:
            assert agree == 1.0, f"epsilon 0 took a non-greedy action ({agree:.2f} greedy)"
        else:
            assert agree < 0.75, f"epsilon 1 acted greedily ({agree:.2f} greedy)"


# ---------------------------------------------------------------- parts
def test_soft_update_and_hard_copy():
    module = load_algo("dqn_cartpole")
    online, target = nn.Linear(2, 2), nn.Linear(2, 2)
    before = target.weight.detach().clone()
    module.soft_update(target, online, 0.25)
    assert torch.allclose(target.weight, 0.25 * online.weight + 0.75 * before)
    module.soft_update(target, online, 1.0)
    assert torch.equal(target.weight, online.weight)


@pytest.mark.parametrize("stem", PENDULUMS)
def test_pendulum_actions_include_both_ends(stem):
    module = load_algo(stem)
    env = module.make_env(module.Args(n_actions=11))
    assert env.action_space.n == 11
    torques = [float(env.action(a)[0]) for a in range(11)]
    assert torques == pytest.approx(np.linspace(-2.0, 2.0, 11).tolist())


def test_replay_buffer_wraps_around():
    module = load_algo("dqn_cartpole")
    rb = module.ReplayBuffer(5, 2)
    for step in range(3):  # 3 vector steps of E = 2 transitions: 6 > 5, so the first is overwritten
        obs = np.full((2, 2), step, dtype=np.float32)
        rb.add(obs, np.array([0, 1]), np.array([1.0, 2.0]), obs + 1, np.array([0.0, 1.0]))
    assert rb.added == 6
    assert rb.obs[0, 0] == 2.0 and rb.terminations.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    obs_b, actions_b, rewards_b, next_obs_b, terms_b = rb.sample(
        64, np.random.default_rng(0), torch.device("cpu")
    )
    assert obs_b.shape == (64, 2) and set(actions_b.tolist()) == {0, 1}
    assert torch.equal(next_obs_b, obs_b + 1), "s and s' of one transition come from the same row"


# ---------------------------------------------------------------- learning (defaults, fixed seed)
@pytest.mark.learning
@pytest.mark.parametrize(
    "stem, argv, threshold",
    [
        ("dqn_cartpole", [], 475.0),
        ("dqn_pendulum", [], -200.0),
        ("ddqn_pendulum", ["--total-steps", "20000"], -200.0),
        # half the default 20k steps (seed 1: training returns pass -200 after 8k steps; evaluation -143)
        ("dueling_dqn_pendulum", ["--total-steps", "10000"], -200.0),
    ],
)
def test_learns(stem, argv, threshold, runs_dir):
    summary = run_algo(stem, ["--seed", "1", *argv], runs_dir)
    assert summary["eval_return_mean"] >= threshold, summary
