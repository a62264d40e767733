"""Policy-gradient family: the return/advantage estimators against plain loops, what the rollout stores,
what reaches the gradient, and learning tests.

Rollouts are [T, E]; values is [T+1, E] with values[t + 1] = V(observation after step t), the
final observation where step t ended an episode. Env 0 below terminates at t=1 and env 1 is
truncated by the time limit at t=2, so both a cut without and one with a bootstrap are checked.
The mechanism tests are fast (seconds) so that tests/sabotage/*.toml can name them.
"""

import copy
import signal
import threading

import gymnasium as gym
import numpy as np
import pytest
import torch
import tyro
from conftest import load_algo, run_algo

STEMS = ["reinforce_cartpole", "actor_critic_cartpole", "ppo_cartpole"]

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


# ---------------------------------------------------------------- what the rollout stores
class Recorder(gym.vector.VectorWrapper):
    """Keeps what the environments returned at every step: obs, reward, terminated, truncated [E] each."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = []

    def step(self, actions):
        out = self.env.step(actions)
        self.steps.append(tuple(np.array(x, copy=True) for x in out[:4]))
        return out


def run_recorded(stem: str, argv: list[str], runs_dir, max_episode_steps: int = 12):
    """Run main() on CartPole with a short time limit (both terminations and truncations happen), recording
    every env step and every batch handed to update() with the agent as it was before that update."""
    module = load_algo(stem)
    recorders, batches = [], []

    def make_env(args):
        envs = gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point",
                            max_episode_steps=max_episode_steps)  # fmt: skip
        recorders.append(Recorder(envs))
        return recorders[-1]

    real_update = module.update

    def update(agent, optimizer, batch, args, stop):
        batches.append(({k: v.clone() for k, v in batch.items()}, copy.deepcopy(agent)))
        return real_update(agent, optimizer, batch, args, stop)

    module.make_env, module.update = make_env, update
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = tyro.cli(module.Args, args=[*argv, "--runs-dir", str(runs_dir), "--no-progress"])
        module.main(args)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return module, args, recorders[0].steps, batches


ROLLOUT = ["--num-envs", "4", "--num-steps", "40", "--total-steps", "320", "--eval-episodes", "1"]


@pytest.mark.parametrize("stem", STEMS)
def test_rollout_stores_terminations_truncations_and_reset_steps(stem, tmp_path):
    module, args, steps, batches = run_recorded(stem, ROLLOUT, tmp_path)
    T = args.num_steps
    assert len(batches) == 2 and len(steps) == 2 * T
    obs, rewards, terminated, truncated = (np.stack(x) for x in zip(*steps))  # [2T, E, ...]
    ended = terminated | truncated  # [2T, E]
    assert (truncated & ~terminated)[:-1].any() and terminated[:-1].any(), "the test needs both kinds of end"
    for k, (batch, agent) in enumerate(batches):
        rows = slice(k * T, (k + 1) * T)
        # only a termination zeroes the bootstrap; dones cut the return at either kind of end
        np.testing.assert_array_equal(batch["terminations"].numpy(), terminated[rows])
        np.testing.assert_array_equal(batch["dones"].numpy(), ended[rows])
        np.testing.assert_array_equal(batch["rewards"].numpy(), rewards[rows])
        # NEXT_STEP autoreset: the step after an episode's end only resets; it must be marked not valid
        before = np.concatenate([np.zeros_like(ended[:1]), ended])[rows]  # [T, E] did the previous step end?
        np.testing.assert_array_equal(batch["valid"].numpy(), ~before)
        # s_{t+1} is what the env returned at step t, the final observation at an episode's end
        np.testing.assert_array_equal(batch["obs"][1:].numpy(), obs[rows][:-1])
        with torch.no_grad():
            next_values = agent.critic(torch.as_tensor(obs[rows])).squeeze(-1)  # [T, E]
            log_pi = torch.distributions.Categorical(logits=agent.actor(batch["obs"])).log_prob(
                batch["actions"]
            )
        torch.testing.assert_close(batch["values"][1:], next_values)
        torch.testing.assert_close(batch["logprobs"], log_pi)
        assert (~batch["valid"]).any(), "the test needs a reset step inside a rollout"


def updated(module, agent, batch: dict, args, seed: int = 0) -> torch.nn.Module:
    """A copy of `agent` after one update() on `batch` (a plain Adam, the same minibatch order)."""
    agent = copy.deepcopy(agent)
    torch.manual_seed(seed)
    module.update(agent, torch.optim.Adam(agent.parameters(), lr=1e-2), batch, args, threading.Event())
    return agent


def same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("stem", STEMS)
def test_reset_steps_are_never_trained_on(stem, tmp_path):
    """Whatever sits at a step that only reset its env (obs, action, reward) must not change the update."""
    module, args, _, batches = run_recorded(stem, ROLLOUT, tmp_path)
    batch, agent = batches[0]
    reset = ~batch["valid"]  # [T, E]
    assert reset.any()
    other = {k: v.clone() for k, v in batch.items()}
    other["actions"][reset] = 1 - other["actions"][reset]
    other["obs"][reset] = 3.0 * torch.randn_like(other["obs"][reset])
    other["rewards"][reset] = 100.0
    assert not same_parameters(updated(module, agent, batch, args), agent)
    assert same_parameters(updated(module, agent, batch, args), updated(module, agent, other, args))


# ---------------------------------------------------------------- what reaches the gradient
def toy_batch(module, agent, rewards, values, terminations, dones) -> dict:
    """A batch of update()'s shape around the arrays above: random observations and actions, every step
    valid, old log-probabilities from `agent` (the ratio starts at 1)."""
    T, E = rewards.shape
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(T, E, 4, generator=generator)  # [T, E, O]
    actions = torch.randint(2, (T, E), generator=generator)  # [T, E]
    with torch.no_grad():
        logprobs = torch.distributions.Categorical(logits=agent.actor(obs)).log_prob(actions)
    return {"obs": obs, "actions": actions, "rewards": rewards, "values": values, "terminations": terminations,
            "dones": dones, "valid": torch.ones(T, E, dtype=torch.bool), "logprobs": logprobs}  # fmt: skip


def toy_agent_and_batch(stem: str):
    """The file's module, a seeded 4-observation 2-action agent and the toy rollout of the module tests."""
    module = load_algo(stem)
    torch.manual_seed(0)
    agent = module.Agent(4, 2, 16)
    return module, agent, toy_batch(module, agent, REWARDS, VALUES, TERMINATIONS, DONES)


def family_args(module, **fields):
    known = {k: v for k, v in dict(update_epochs=1, num_minibatches=1, gae_lambda=LAMBDA).items()
             if hasattr(module.Args, k)}  # fmt: skip
    return module.Args(gamma=GAMMA, **known, **fields)


@pytest.mark.parametrize("stem", STEMS)
def test_losses_weight_log_pi_by_the_advantage_and_regress_v_on_the_target(stem):
    """update()'s first losses against the family's equations, computed here from the plain loops."""
    module, agent, batch = toy_agent_and_batch(stem)
    with torch.no_grad():
        dist, v = agent(batch["obs"])  # [T, E, A], [T, E]
        log_pi = dist.log_prob(batch["actions"])  # [T, E]
    if stem == "reinforce_cartpole":
        target = naive_returns(GAMMA)  # G_t; the baseline V(s_t) is subtracted in the policy gradient
        policy_loss = -(log_pi * (target - v)).mean()
    elif stem == "actor_critic_cartpole":
        target = REWARDS + GAMMA * (1.0 - TERMINATIONS) * VALUES[1:]  # y_t, bootstrapped from V(s_{t+1})
        policy_loss = -(log_pi * (target - v)).mean()  # the TD error weights log pi
    else:
        advantages = naive_gae(GAMMA, LAMBDA)
        target = advantages + VALUES[:-1]  # the lambda-return
        policy_loss = -advantages.mean()  # ratio 1 on the first minibatch: the surrogate is the advantage
    args = family_args(module, norm_adv=False)
    losses = module.update(agent, torch.optim.Adam(agent.parameters()), batch, args, threading.Event())
    assert losses["policy_loss"].item() == pytest.approx(policy_loss.item(), rel=1e-5, abs=1e-6)
    assert losses["value_loss"].item() == pytest.approx((0.5 * (v - target) ** 2).mean().item(), rel=1e-5)


@pytest.mark.parametrize("stem", STEMS)
def test_no_gradient_reaches_the_critic_through_the_policy_loss(stem):
    """The baseline / TD error / GAE is a constant to the actor's loss: with vf_coef 0 the critic stays put."""
    module, agent, batch = toy_agent_and_batch(stem)
    after = updated(module, agent, batch, family_args(module, vf_coef=0.0, ent_coef=0.0))
    assert not same_parameters(after.actor, agent.actor)
    assert same_parameters(after.critic, agent.critic), "the policy loss sent a gradient into V"


@pytest.mark.parametrize("stem", STEMS)
def test_update_makes_the_better_action_more_likely(stem):
    """One state, action 0 pays 1 and action 1 pays 0, every step its own episode: pi(0|s) must rise."""
    module = load_algo(stem)
    torch.manual_seed(0)
    agent = module.Agent(4, 2, 16)
    T, E = 8, 2
    batch = toy_batch(
        module, agent, torch.zeros(T, E), torch.zeros(T + 1, E), torch.ones(T, E), torch.ones(T, E)
    )
    batch["obs"] = torch.ones(T, E, 4)
    batch["actions"] = torch.arange(T * E).reshape(T, E) % 2
    batch["rewards"] = (batch["actions"] == 0).float()
    with torch.no_grad():
        batch["logprobs"] = torch.distributions.Categorical(logits=agent.actor(batch["obs"])).log_prob(
            batch["actions"]
        )
    args = module.Args(**({"update_epochs": 1} if hasattr(module.Args, "update_epochs") else {}))
    after = updated(module, agent, batch, args)
    p0 = lambda a: torch.softmax(a.actor(torch.ones(4)), -1)[0].item()  # noqa: E731
    assert p0(after) > p0(agent)


def test_ppo_clipped_ratio_stops_the_gradient():
    """All advantages > 0: past 1 + eps the clipped term is a constant, no gradient; below 1 - eps the
    pessimistic min keeps the unclipped term, which still pulls pi(a|s) up."""
    module = load_algo("ppo_cartpole")
    torch.manual_seed(0)
    agent = module.Agent(4, 2, 16)
    T, E = 4, 2
    batch = toy_batch(
        module, agent, torch.ones(T, E), torch.zeros(T + 1, E), torch.ones(T, E), torch.ones(T, E)
    )
    args = family_args(module, norm_adv=False, vf_coef=0.0, ent_coef=0.0, clip_coef=0.2)
    far_above = dict(batch, logprobs=batch["logprobs"] - 1.0)  # ratio e > 1.2
    assert same_parameters(updated(module, agent, far_above, args).actor, agent.actor)
    far_below = dict(batch, logprobs=batch["logprobs"] + 1.0)  # ratio 1/e < 0.8
    assert not same_parameters(updated(module, agent, far_below, args).actor, agent.actor)
    inside = updated(module, agent, batch, args)  # ratio 1
    assert not same_parameters(inside.actor, agent.actor)


# ---------------------------------------------------------------- learning (defaults, seed 1)
@pytest.mark.learning
@pytest.mark.parametrize("stem", STEMS)
def test_reaches_the_cartpole_threshold(stem, runs_dir):
    summary = run_algo(stem, ["--seed", "1"], runs_dir)
    assert summary["eval_return_mean"] >= 475.0, summary
