"""CQL: pure functions, the no-interaction rule, bad datasets, the learning threshold."""

import copy
import math
import os
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_bad_files_rejected, load_algo, run_algo, smoke_args

GAIL, CQL = "gail_cartpole", "cql_pendulum"


# ---------------------------------------------------------------- CQL: the penalty (SAC's parts: tests/test_continuous.py)
def test_cql_penalty_matches_a_naive_loop():
    cql = load_algo(CQL)
    g = torch.Generator().manual_seed(0)
    q_data, q_prop = torch.randn(2, 3, generator=g), torch.randn(2, 3, 6, generator=g)
    log_density = torch.randn(3, 6, generator=g)
    naive = 0.0
    for j in range(2):
        naive += (
            sum(
                math.log(sum(math.exp(q_prop[j, b, k] - log_density[b, k]) for k in range(6))) - q_data[j, b]
                for b in range(3)
            )
            / 3
        )
    assert cql.cql_penalty(q_data, q_prop, log_density).item() == pytest.approx(float(naive), abs=1e-5)


def test_cql_penalty_pushes_data_q_up_and_proposal_q_down():
    cql = load_algo(CQL)
    q_data = torch.zeros(2, 4, requires_grad=True)
    q_prop = torch.zeros(2, 4, 6, requires_grad=True)
    cql.cql_penalty(q_data, q_prop, torch.zeros(4, 6)).backward()
    assert (q_data.grad < 0).all() and (q_prop.grad > 0).all()  # descent raises data Q, lowers the rest


def tiny_sac(cql, seed=0):
    torch.manual_seed(seed)
    low, high = np.array([-2.0], np.float32), np.array([2.0], np.float32)
    actor, critic = cql.Actor(3, 1, 16, low, high, (-5.0, 2.0)), cql.Critic(3, 1, 16, num_critics=2)
    return actor, critic


def test_cql_proposals_carry_their_log_densities():
    """Uniform proposals on [-2, 2] have log density -log 4; policy proposals their own log pi(a|s)."""
    cql = load_algo(CQL)
    actor, critic = tiny_sac(cql)
    obs, next_obs = torch.randn(5, 3), torch.randn(5, 3)
    torch.manual_seed(3)
    q, log_density = cql.cql_proposals(actor, critic, obs, next_obs, 4)
    assert q.shape == (2, 5, 12) and log_density.shape == (5, 12)
    torch.testing.assert_close(log_density[:, :4], torch.full((5, 4), -math.log(4.0)))
    torch.manual_seed(3)
    with torch.no_grad():
        pi_actions, pi_log_prob = actor(obs.repeat_interleave(4, dim=0))
    torch.testing.assert_close(log_density[:, 4:8], pi_log_prob.view(5, 4))
    expected = critic(obs.repeat_interleave(4, dim=0), pi_actions).view(2, 5, 4)
    torch.testing.assert_close(q[:, :, 4:8], expected)  # each proposal is scored at its own state


def test_cql_update_pushes_q_down_off_the_data(monkeypatch):
    """A few updates on one batch: with the penalty, Q(s, a_data) - Q(s, uniform a) grows well beyond
    what plain SAC (cql_alpha = 0) gives from the same start."""
    cql = load_algo(CQL)
    args = SimpleNamespace(gamma=0.9, tau=0.005, cql_num_actions=4)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(32, 3, generator=g)
    batch = [
        obs,
        torch.full((32, 1), 1.5),
        -torch.rand(32, generator=g),
        torch.randn(32, 3, generator=g),
        torch.zeros(32),
    ]
    uniform = torch.linspace(-2, 2, 9)
    gaps = {}
    for cql_alpha in (0.0, 5.0):
        actor, critic = tiny_sac(cql)
        target_critic, log_alpha = copy.deepcopy(critic), torch.tensor(0.0, requires_grad=True)
        optimizers = torch.optim.Adam(critic.parameters(), 1e-2), torch.optim.Adam(actor.parameters(), 1e-2)
        for _ in range(30):
            cql.update(actor, critic, target_critic, log_alpha, optimizers, batch, args, cql_alpha)
        with torch.no_grad():
            q_data = critic(obs, batch[1]).mean()
            q_off = torch.stack([critic(obs, torch.full((32, 1), float(a))).mean() for a in uniform]).mean()
        gaps[cql_alpha] = (q_data - q_off).item()
    assert gaps[5.0] > gaps[0.0] + 1.0, gaps


def test_cql_offline_agent_is_fresh_and_trains_with_the_penalty(monkeypatch, tmp_path):
    """The online SAC that builds the data updates with cql_alpha 0; the offline updates use --cql-alpha on
    other networks (a fresh agent, not the data's SAC)."""
    cql = load_algo(CQL)
    calls = []
    real = cql.update
    monkeypatch.setattr(cql, "update", lambda *a: calls.append((a[0], a[-1])) or real(*a))
    argv = [*smoke_args(CQL), "--cql-alpha", "0.5", "--runs-dir", str(tmp_path), "--no-progress"]
    summary = cql.main(cql.tyro.cli(cql.Args, args=argv))
    online = [actor for actor, alpha in calls if alpha == 0.0]
    offline = [actor for actor, alpha in calls if alpha == 0.5]
    assert online and len(offline) == summary["num_updates"] == 20
    assert all(a is offline[0] for a in offline) and offline[0] is not online[0]


# ---------------------------------------------------------------- CQL: no interaction while training offline
def random_dataset(path, n=600, seed=0):
    env, rng = gym.make("Pendulum-v1"), np.random.default_rng(seed)
    data = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminations")}
    obs, _ = env.reset(seed=seed)
    for _ in range(n):
        action = rng.uniform(-2, 2, size=1).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(data, (obs, action, reward, next_obs, terminated)):
            data[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    np.savez(path, **{k: np.array(v, np.float32) for k, v in data.items()})
    return str(path)


def test_cql_offline_training_takes_no_env_steps(tmp_path, monkeypatch):
    """Count every env.step through the file's own make_env: only evaluation may step."""
    cql = load_algo(CQL)
    steps = {"training": 0, "all": 0}
    make_env = cql.make_env

    def counting_make_env(*a, **k):
        env = make_env(*a, **k)
        step = env.step

        def counted(action):
            steps["all"] += 1
            return step(action)

        env.step = counted
        return env

    monkeypatch.setattr(cql, "make_env", counting_make_env)
    dataset = random_dataset(tmp_path / "data.npz")
    argv = [
        *smoke_args(CQL),
        "--dataset",
        dataset,
        "--total-steps",
        "50",
        "--runs-dir",
        str(tmp_path),
        "--no-progress",
    ]
    summary = cql.main(cql.tyro.cli(cql.Args, args=argv))  # the patched module itself, not a fresh copy
    assert summary["num_updates"] == 50 and summary["dataset_env_steps"] == 0
    assert steps["all"] == summary["eval_episodes"] * 200  # evaluation only: 200 steps per Pendulum episode
    assert summary["dataset_size"] == 600


def test_cql_without_dataset_builds_and_saves_one(tmp_path):
    summary = run_algo(CQL, [*smoke_args(CQL), "--save-buffer"], tmp_path / "runs")
    assert summary["dataset_env_steps"] == summary["dataset_size"] == 300
    with np.load(os.path.join(summary["run_dir"], "buffer.npz"), allow_pickle=False) as data:
        assert data["observations"].shape == (300, 3) and data["rewards"].shape == (300,)
        # 300 Pendulum steps: a whole episode, and half of one that counts as one
        reused = data["rewards"].sum() / 2
    assert summary["dataset_return"] == pytest.approx(float(reused), rel=1e-5)


def test_cql_dataset_return_counts_episodes_by_their_ends(tmp_path):
    """Episodes end at a termination or where s' is not the next row's s, read around the ring: a terminating
    task's data (an InvertedPendulum's, +1 per step) has the average return of its episodes, not the time
    limit's, also when the ring buffer has wrapped and its newest row sits before its oldest."""
    obs = np.arange(18, dtype=np.float32).reshape(6, 3)  # in time order; rows 0-1: an episode that terminates
    next_obs = np.roll(obs, -1, axis=0)
    next_obs[[3, 5]] += 100.0  # rows 2-3 and 4-5: episodes that end by a time limit
    data = dict(observations=obs, actions=np.zeros((6, 1), np.float32), rewards=np.arange(1, 7, dtype=np.float32),
                next_observations=next_obs, terminations=np.array([0, 1, 0, 0, 0, 0], np.float32))  # fmt: skip
    for shift in (0, 3):  # in time order, and as a wrapped ring (its last row, time row 2, ends no episode)
        np.savez(tmp_path / f"data{shift}.npz", **{k: np.roll(v, shift, axis=0) for k, v in data.items()})
        argv = [*smoke_args(CQL), "--dataset", str(tmp_path / f"data{shift}.npz"), "--total-steps", "1"]
        summary = run_algo(CQL, argv, tmp_path / "runs")
        assert summary["dataset_return"] == pytest.approx(21 / 3), shift  # rewards 1..6 over three episodes


def test_cql_bad_dataset_stops_cleanly(tmp_path):
    good = dict(
        observations=np.zeros((5, 3), np.float32), actions=np.zeros((5, 1), np.float32),
        rewards=np.zeros(5, np.float32), next_observations=np.zeros((5, 3), np.float32),
        terminations=np.zeros(5, np.float32),
    )  # fmt: skip
    bad = {
        "missing.npz": None,
        "corrupt.npz": b"not an npz",
        "no_rewards.npz": {k: v for k, v in good.items() if k != "rewards"},
        "wrong_obs.npz": good | dict(observations=np.zeros((5, 4), np.float32)),
        "short_actions.npz": good | dict(actions=np.zeros((4, 1), np.float32)),
        "nan_rewards.npz": good | dict(rewards=np.full(5, np.nan, np.float32)),
        "empty.npz": {k: v[:0] for k, v in good.items()},
        "pickled.npz": good | dict(rewards=np.array([object()] * 5, dtype=object)),
    }
    assert_bad_files_rejected(CQL, "--dataset", bad, tmp_path)


# ---------------------------------------------------------------- learning (documented thresholds)
@pytest.mark.learning
def test_cql_beats_its_dataset_offline(tmp_path):
    summary = run_algo(CQL, [], tmp_path)
    assert summary["eval_return_mean"] >= -250, summary
    assert summary["eval_return_mean"] > summary["dataset_return"], summary
