"""Policy-gradient family: the return/advantage estimators against plain loops, what the rollout stores,
what reaches the gradient, and learning tests.

Rollouts are [T, E]; values is [T+1, E] with values[t + 1] = V(observation after step t), the
final observation where step t ended an episode. Env 0 below terminates at t=1 and env 1 is
truncated by the time limit at t=2, so both a cut without and one with a bootstrap are checked.
The mechanism tests are fast (seconds) so that tests/sabotage/*.toml can name them.
"""

import copy
import math
import signal
import threading

import gymnasium as gym
import numpy as np
import pytest
import torch
import tyro
from conftest import load_algo, run_algo, two_of_three

STEMS = ["reinforce_cartpole", "actor_critic_cartpole", "ppo_cartpole", "trpo_cartpole"]

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
    """Run main() on CartPole with a short time limit (both terminations and truncations happen; Pendulum only
    truncates), recording every env step and every batch handed to update() with the agent as it was before."""
    module = load_algo(stem)
    recorders, batches = [], []

    def make_env(args):
        mode = "vector_entry_point" if gym.spec(args.env_id).vector_entry_point else "sync"  # as the files do
        kwargs = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP} if mode == "sync" else {}
        envs = gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode=mode, vector_kwargs=kwargs,
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


@pytest.mark.parametrize("stem", [*STEMS, "ppo_pendulum"])
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


@pytest.mark.parametrize("stem", [s for s in STEMS if s != "trpo_cartpole"])  # TRPO fits V on its own
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


# ---------------------------------------------------------------- TRPO: Fisher, conjugate gradient, KL bound
def flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def trpo_toy():
    """trpo_cartpole, a float64 agent small enough for a dense P x P Fisher (P = 50), the toy batch."""
    module = load_algo("trpo_cartpole")
    torch.manual_seed(0)
    agent = module.Agent(4, 2, 4)
    batch = toy_batch(module, agent, REWARDS, VALUES, TERMINATIONS, DONES)
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    obs, actions = batch["obs"].flatten(0, 1), batch["actions"].flatten()  # [B, O], [B]
    return module, agent.double(), batch, obs, actions


def dense_fisher(actor: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """F = mean_s J_s^T (diag p_s - p_s p_s^T) J_s [P, P], J_s = d logits(s) / d theta: the categorical policy's
    Fisher information from its definition, with no KL and no double backprop."""
    named = list(actor.named_parameters())
    theta = flat(p.detach() for _, p in named)

    def logits(flat_theta):
        chunks = flat_theta.split([p.numel() for _, p in named])
        params = {name: c.view_as(p) for (name, p), c in zip(named, chunks)}
        return torch.func.functional_call(actor, params, (obs,))  # [B, A]

    jac = torch.autograd.functional.jacobian(logits, theta)  # [B, A, P]
    p = torch.softmax(logits(theta), -1).detach()  # [B, A]
    middle = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # [B, A, A]
    return torch.einsum("bap,bac,bcq->pq", jac, middle, jac) / len(obs)


def test_trpo_fisher_vector_product_is_the_damped_fisher():
    """Double backprop through the mean KL(pi_old || pi_theta) gives (F + damping I) v for every v."""
    module, agent, _, obs, _ = trpo_toy()
    fvp = module.fisher_vector_product(agent.actor, obs, 0.1)
    eye = torch.eye(sum(p.numel() for p in agent.actor.parameters()), dtype=torch.float64)  # [P, P]
    columns = torch.stack([fvp(e) for e in eye], 1)  # [P, P]
    fisher = dense_fisher(agent.actor, obs)
    assert fisher.abs().max() > 1e-3, "the test needs a Fisher matrix that is not ~0"
    torch.testing.assert_close(columns, fisher + 0.1 * eye)


def test_trpo_conjugate_gradient_solves_against_a_dense_solve():
    module, agent, _, obs, _ = trpo_toy()
    generator = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(50, 50, generator=generator, dtype=torch.float64))
    spd = q @ torch.diag(torch.logspace(-1, 1, 50, dtype=torch.float64)) @ q.T  # condition number 100
    damped_fisher = dense_fisher(agent.actor, obs) + 0.1 * torch.eye(50, dtype=torch.float64)
    for matrix in (spd, damped_fisher):  # steepest descent (p = r) is still 0.3 off after 100 steps on spd
        b = torch.randn(50, generator=generator, dtype=torch.float64)
        x = module.conjugate_gradient(lambda v: matrix @ v, b, 100, 0.0)  # noqa: B023
        torch.testing.assert_close(x, torch.linalg.solve(matrix, b))
    # in exact arithmetic conjugate gradient ends after as many steps as A has distinct eigenvalues: F has rank
    # <= B (A - 1) = B here, so F + damping I has at most B + 1
    x = module.conjugate_gradient(lambda v: damped_fisher @ v, b, len(obs) + 1, 0.0)
    torch.testing.assert_close(x, torch.linalg.solve(damped_fisher, b))


def test_trpo_step_is_the_natural_gradient_scaled_to_the_kl_bound():
    """The actor moves by a fraction of beta F^-1 g, with 1/2 (beta F^-1 g)^T F (beta F^-1 g) = max_kl, and the
    KL it measures afterwards is within max_kl."""
    module, agent, batch, obs, actions = trpo_toy()
    args = module.Args(gamma=GAMMA, gae_lambda=LAMBDA, norm_adv=False, max_kl=0.01, damping=0.1, cg_iters=50,
                       cg_residual_tol=0.0, update_epochs=1, num_minibatches=1)  # fmt: skip
    advantages = module.compute_gae(batch["rewards"], batch["values"], batch["terminations"], batch["dones"],
                                    GAMMA, LAMBDA).flatten()  # fmt: skip
    old_logits = agent.actor(obs).detach()  # [B, A]
    log_pi = torch.distributions.Categorical(logits=agent.actor(obs)).log_prob(actions)  # [B]
    g = flat(torch.autograd.grad((log_pi * advantages).mean(), list(agent.actor.parameters())))  # [P]
    damped_fisher = dense_fisher(agent.actor, obs) + 0.1 * torch.eye(len(g), dtype=torch.float64)
    natural = torch.linalg.solve(damped_fisher, g)  # F^-1 g
    full_step = (2 * 0.01 / (natural @ damped_fisher @ natural)).sqrt() * natural
    theta = flat(p.detach() for p in agent.actor.parameters())
    losses = module.update(agent, torch.optim.Adam(agent.parameters()), batch, args, threading.Event())
    fraction = losses["step_fraction"].item()
    assert fraction > 0, "the line search accepted no step along the natural gradient"
    moved = flat(p.detach() for p in agent.actor.parameters()) - theta
    torch.testing.assert_close(moved, fraction * full_step)
    with torch.no_grad():
        old, new = (torch.distributions.Categorical(logits=x) for x in (old_logits, agent.actor(obs)))
        kl = torch.distributions.kl_divergence(old, new).mean()
    assert kl.item() <= 0.01 and losses["kl"].item() == pytest.approx(kl.item())


def test_trpo_line_search_rejects_a_step_that_lowers_the_surrogate():
    """Surrogate -(theta - 1)^2 from theta = 0: the full step to 3 lowers it, half of it (to 1.5) raises it."""
    line_search = load_algo("trpo_cartpole").line_search
    objective = lambda theta: (-((theta - 1.0) ** 2).sum(), torch.tensor(0.0))  # noqa: E731  (surrogate, KL)
    theta, fraction = line_search(objective, torch.zeros(1), torch.tensor([3.0]), 0.01, 0.5, 10)
    assert fraction == 0.5 and theta.item() == 1.5
    theta, fraction = line_search(objective, torch.zeros(1), torch.tensor([-1.0]), 0.01, 0.5, 10)
    assert fraction == 0.0 and theta.item() == 0.0, "every step lowers the surrogate: theta must stay"
    theta, fraction = line_search(objective, torch.zeros(1), torch.zeros(1), 0.01, 0.5, 2**62)  # ends at once
    assert fraction == 0.0 and theta.item() == 0.0


def test_trpo_line_search_shrinks_the_step_until_the_kl_is_within_the_bound():
    """Surrogate theta (every step improves it), KL theta^2: from a full step of 4 the first KL <= 1 is at 1."""
    line_search = load_algo("trpo_cartpole").line_search
    objective = lambda theta: (theta.sum(), (theta**2).sum())  # noqa: E731
    theta, fraction = line_search(objective, torch.zeros(1), torch.tensor([4.0]), 1.0, 0.5, 10)
    assert fraction == 0.25 and theta.item() == 1.0
    theta, fraction = line_search(objective, torch.zeros(1), torch.tensor([4.0]), 1.0, 0.5, 2)
    assert fraction == 0.0 and theta.item() == 0.0, "no step within the bound: theta must stay"


@pytest.mark.parametrize("lam", [0.0, LAMBDA, 1.0])
def test_trpo_compute_gae_matches_a_plain_loop(lam):
    gae = load_algo("trpo_cartpole").compute_gae(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, lam)
    torch.testing.assert_close(gae, naive_gae(GAMMA, lam))


# ---------------------------------------------------------------- PPO on Pendulum: the Gaussian policy
def pendulum_agent_and_batch(obs_dim: int = 3, act_dim: int = 1):
    """ppo_pendulum, a seeded Gaussian agent and the toy rollout of the module tests with continuous actions
    (several outside Pendulum's [-2, 2]); every step valid, old log-probabilities from the agent (ratio 1)."""
    module = load_algo("ppo_pendulum")
    torch.manual_seed(0)
    agent = module.Agent(obs_dim, act_dim, 16)
    T, E = REWARDS.shape
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(T, E, obs_dim, generator=generator)  # [T, E, O]
    actions = 2.5 * torch.randn(T, E, act_dim, generator=generator)  # [T, E, A]
    with torch.no_grad():
        logprobs = agent.policy(obs).log_prob(actions)  # [T, E]
    batch = {"obs": obs, "actions": actions, "rewards": REWARDS, "values": VALUES, "terminations": TERMINATIONS,
             "dones": DONES, "valid": torch.ones(T, E, dtype=torch.bool), "logprobs": logprobs}  # fmt: skip
    return module, agent, batch


def test_ppo_pendulum_gaussian_log_prob_and_entropy_match_torch_distributions():
    """log pi(a|s) and the entropy are sums over the A action dimensions of N(mu(s), sigma^2), one value per
    (t, e); sigma = exp(log_std) is a learned vector that no observation changes."""
    module, agent, batch = pendulum_agent_and_batch(obs_dim=3, act_dim=2)
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([-0.5, 0.3]))
    obs, actions = batch["obs"], batch["actions"]  # [T, E, O], [T, E, A]
    dist, values = agent(obs)
    assert dist.log_prob(actions).shape == values.shape == REWARDS.shape  # [T, E]
    mean, sigma = agent.actor(obs), torch.tensor([-0.5, 0.3]).exp()  # [T, E, A], [A]
    per_dim = torch.distributions.Normal(mean, sigma)
    torch.testing.assert_close(dist.log_prob(actions), per_dim.log_prob(actions).sum(-1))
    log_density = -((actions - mean) ** 2) / (2 * sigma**2) - sigma.log() - 0.5 * math.log(2 * math.pi)
    closed_form = log_density.sum(-1)  # [T, E, A] -> [T, E]
    torch.testing.assert_close(dist.log_prob(actions), closed_form)
    torch.testing.assert_close(dist.entropy(), per_dim.entropy().sum(-1))
    torch.testing.assert_close(dist.stddev, sigma.expand_as(mean))  # the same sigma in every state
    torch.testing.assert_close(dist.mean, mean)
    dist.log_prob(actions).sum().backward()
    assert agent.log_std.grad is not None and agent.log_std.grad.abs().min() > 0, "log sigma is not learned"


@pytest.mark.parametrize("lam", [0.0, LAMBDA, 1.0])
def test_ppo_pendulum_compute_gae_bootstraps_a_truncation(lam):
    compute_gae = load_algo("ppo_pendulum").compute_gae
    gae = compute_gae(REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, lam)
    torch.testing.assert_close(gae, naive_gae(GAMMA, lam))
    assert gae[2, 1].item() == pytest.approx(2.0 + GAMMA * 0.9 - 0.1)  # truncated: + gamma V(final obs)


# sigma = e at the start: many samples fall outside Pendulum's [-2, 2]
PENDULUM_ROLLOUT = "--num-envs 2 --num-steps 20 --total-steps 80 --init-log-std 1.0 --eval-episodes 1".split()


def test_ppo_pendulum_rollout_keeps_the_unclipped_sample_and_bootstraps_truncations(tmp_path):
    """The rollout stores the sample a ~ N(mu, sigma^2) itself, not the action clipped to [-2, 2] that the env
    got, and log pi_old of that sample; Pendulum only truncates, so no step zeroes the bootstrap."""
    module, args, steps, batches = run_recorded("ppo_pendulum", PENDULUM_ROLLOUT, tmp_path)
    T = args.num_steps
    assert len(batches) == 2 and len(steps) == 2 * T
    obs, rewards, terminated, truncated = (np.stack(x) for x in zip(*steps))  # [2T, E, ...]
    assert truncated[:-1].any() and not terminated.any()
    for k, (batch, agent) in enumerate(batches):
        rows = slice(k * T, (k + 1) * T)
        np.testing.assert_array_equal(batch["terminations"].numpy(), np.zeros_like(terminated[rows]))
        np.testing.assert_array_equal(batch["dones"].numpy(), truncated[rows])
        np.testing.assert_array_equal(batch["rewards"].numpy(), rewards[rows].astype(np.float32))
        before = np.concatenate([np.zeros_like(truncated[:1]), truncated])[rows]  # [T, E]
        np.testing.assert_array_equal(batch["valid"].numpy(), ~before)
        np.testing.assert_array_equal(batch["obs"][1:].numpy(), obs[rows][:-1])
        actions = batch["actions"]  # [T, E, A]
        assert actions.shape == (T, args.num_envs, 1)
        assert (actions.abs() > 2.0).any(), "the stored actions were clipped: log pi must score the sample"
        with torch.no_grad():
            mean, sigma = agent.actor(batch["obs"]), agent.log_std.exp()  # [T, E, A], [A]
            log_pi = torch.distributions.Normal(mean, sigma).log_prob(actions).sum(-1)  # [T, E]
            next_values = agent.critic(torch.as_tensor(obs[rows])).squeeze(-1)  # [T, E]
        torch.testing.assert_close(batch["logprobs"], log_pi)
        torch.testing.assert_close(batch["values"][1:], next_values)


def test_ppo_pendulum_losses_are_the_clipped_surrogate_and_the_lambda_return():
    """At ratio 1 the surrogate is the mean advantage, GAE of the scaled rewards; V regresses on A + V_old."""
    module, agent, batch = pendulum_agent_and_batch()
    with torch.no_grad():
        _, v = agent(batch["obs"])  # [T, E]
    for scale in (1.0, 0.1):
        advantages = module.compute_gae(scale * REWARDS, VALUES, TERMINATIONS, DONES, GAMMA, LAMBDA)  # [T, E]
        if scale == 1.0:
            torch.testing.assert_close(advantages, naive_gae(GAMMA, LAMBDA))
        args = family_args(module, norm_adv=False, reward_scale=scale)
        losses = module.update(copy.deepcopy(agent), torch.optim.Adam(agent.parameters()), batch, args,
                               threading.Event())  # fmt: skip
        assert losses["policy_loss"].item() == pytest.approx(-advantages.mean().item(), rel=1e-5, abs=1e-6)
        target = advantages + VALUES[:-1]
        assert losses["value_loss"].item() == pytest.approx((0.5 * (v - target) ** 2).mean().item(), rel=1e-5)


def test_ppo_pendulum_clipped_ratio_stops_the_gradient():
    """All advantages > 0: past 1 + eps neither mu nor log sigma gets a gradient; below 1 - eps they do."""
    module, agent, batch = pendulum_agent_and_batch()
    batch = dict(batch, rewards=torch.ones_like(REWARDS), values=torch.zeros_like(VALUES))
    args = family_args(module, norm_adv=False, vf_coef=0.0, ent_coef=0.0, clip_coef=0.2)
    policy = lambda a: [*a.actor.parameters(), a.log_std]  # noqa: E731
    same = lambda a, b: all(torch.equal(p, q) for p, q in zip(policy(a), policy(b)))  # noqa: E731
    far_above = dict(batch, logprobs=batch["logprobs"] - 1.0)  # ratio e > 1.2
    assert same(updated(module, agent, far_above, args), agent)
    far_below = dict(batch, logprobs=batch["logprobs"] + 1.0)  # ratio 1/e < 0.8
    assert not same(updated(module, agent, far_below, args), agent)
    assert not same(updated(module, agent, batch, args), agent)  # ratio 1


def test_ppo_pendulum_update_moves_the_mean_toward_the_better_action():
    """One state; a = +1 pays 1 and a = -1 pays 0, every step its own episode: mu(s) must rise."""
    module, agent, batch = pendulum_agent_and_batch()
    T, E = 8, 2
    actions = torch.where(torch.arange(T * E).reshape(T, E, 1) % 2 == 0, 1.0, -1.0)  # [T, E, A]
    obs = torch.ones(T, E, 3)
    with torch.no_grad():
        logprobs = agent.policy(obs).log_prob(actions)  # [T, E]
    batch = {"obs": obs, "actions": actions, "rewards": (actions[..., 0] > 0).float(), "values": torch.zeros(T + 1, E),
             "terminations": torch.ones(T, E), "dones": torch.ones(T, E), "valid": torch.ones(T, E, dtype=torch.bool),
             "logprobs": logprobs}  # fmt: skip
    after = updated(module, agent, batch, module.Args(update_epochs=1))
    assert after.actor(torch.ones(3)).item() > agent.actor(torch.ones(3)).item()


def test_ppo_pendulum_running_norm_matches_the_mean_and_variance_of_everything_seen():
    module = load_algo("ppo_pendulum")
    torch.manual_seed(0)
    norm, off = module.RunningNorm(3, active=True), module.RunningNorm(3, active=False)
    scale, shift = torch.tensor([1.0, 5.0, 0.1]), torch.tensor([2.0, -3.0, 0.5])
    batches = [torch.randn(n, 3) * scale + shift + k for k, n in enumerate((4, 7, 1, 20))]  # means differ
    for x in batches:
        norm.update(x)
    seen = torch.cat(batches)
    assert torch.allclose(norm.mean, seen.mean(0), atol=1e-4) and norm.count.item() == pytest.approx(
        32, abs=1e-3
    )
    assert torch.allclose(norm.var, seen.var(0, unbiased=False), rtol=1e-3)
    z = norm(seen)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-3)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(3), atol=1e-2)
    assert torch.equal(off(seen), seen)
    assert norm(torch.full((1, 3), 1e6)).max().item() == 10.0  # clipped
    assert not list(norm.parameters()) and {"mean", "var", "count"} <= set(norm.state_dict())


def test_ppo_pendulum_norm_obs_statistics_are_learned_saved_and_restored(tmp_path, monkeypatch):
    """--norm-obs: the statistics follow every training observation, change only between updates (so the rollout,
    pi_old and the update see the same ones), go into model.pt, and --load-model restores them (the same evaluation;
    a copy with the statistics reset evaluates differently; loading them without --norm-obs is refused)."""
    module = load_algo("ppo_pendulum")
    seen, statistics = [], []
    original_update = module.update

    def spy_update(agent, optimizer, batch, args, stop):
        seen.append(batch["obs"].flatten(0, 1).clone())
        statistics.append(agent.obs_norm.mean.clone())
        out = original_update(agent, optimizer, batch, args, stop)
        assert torch.equal(agent.obs_norm.mean, statistics[-1]), "the statistics moved inside the update"
        return out

    monkeypatch.setattr(module, "update", spy_update)
    argv = ["--total-steps", "256", "--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2",
            "--eval-episodes", "1", "--norm-obs", "--init-log-std", "-1.0"]  # fmt: skip
    saved = module.main(tyro.cli(module.Args, args=[*argv, "--save-model", "--runs-dir", str(tmp_path / "a"),
                                                    "--no-progress"]))  # fmt: skip
    assert len(seen) == 4 and torch.equal(
        statistics[0], torch.zeros(3)
    )  # the first rollout: nothing seen yet
    for k in range(1, 4):  # before update k: the mean of the rollouts 0..k-1, all of them
        assert torch.allclose(statistics[k], torch.cat(seen[:k]).mean(0), atol=1e-4)
    model = f"{saved['run_dir']}/model.pt"
    state = torch.load(model, weights_only=True)
    assert state["agent"]["obs_norm.count"].item() == pytest.approx(256, abs=1e-3)
    assert torch.allclose(state["agent"]["obs_norm.mean"], torch.cat(seen).mean(0), atol=1e-4)
    loaded = run_algo("ppo_pendulum", [*argv, "--load-model", model, "--total-steps", "0"], tmp_path / "b")
    assert loaded["eval_return_mean"] == pytest.approx(saved["eval_return_mean"])
    for name, value in (("mean", 0.0), ("var", 1.0), ("count", 1e-4)):
        state["agent"][f"obs_norm.{name}"].fill_(value)
    torch.save(state, tmp_path / "reset.pt")
    reset = run_algo("ppo_pendulum", [*argv, "--load-model", str(tmp_path / "reset.pt"), "--total-steps", "0"],
                     tmp_path / "c")  # fmt: skip
    assert reset["eval_return_mean"] != pytest.approx(saved["eval_return_mean"]), (
        "the statistics changed nothing"
    )
    with pytest.raises(SystemExit, match="--norm-obs"):
        run_algo("ppo_pendulum", [*argv[:-3], "--load-model", model, "--total-steps", "0"], tmp_path / "d")


# ---------------------------------------------------------------- learning (defaults)
@pytest.mark.learning
@pytest.mark.parametrize("stem", [stem for stem in STEMS if stem != "ppo_cartpole"])
def test_reaches_the_cartpole_threshold(stem, runs_dir):
    summary = run_algo(stem, ["--seed", "1"], runs_dir)
    assert summary["eval_return_mean"] >= 475.0, summary


@pytest.mark.learning
def test_ppo_reaches_the_cartpole_threshold_on_two_of_three_seeds(runs_dir):
    """PPO (~8 s a run) can solve CartPole and fall off late in the run; the entropy bonus makes it rarer,
    not impossible (seeds 1-10: 10 of 10 at 475 or more with AVX2 kernels, 9 of 10 with
    ATEN_CPU_CAPABILITY=default, seed 10 at 153.2), and which seed falls differs between CPUs, so the claim
    is two of seeds 1-3. benchmark/run.py's 5 seeds give the rate."""
    summaries = two_of_three("ppo_cartpole", [], runs_dir, lambda s: s["eval_return_mean"] >= 475.0)
    assert sum(s["eval_return_mean"] >= 475.0 for s in summaries) >= 2, summaries


@pytest.mark.learning
def test_ppo_pendulum_reaches_the_pendulum_threshold(runs_dir):
    """60k of the default 100k steps (30 rollouts): seed 1 evaluated at -158.5 there over 10 episodes."""
    summary = run_algo("ppo_pendulum", ["--seed", "1", "--total-steps", "60000"], runs_dir)
    assert summary["eval_return_mean"] >= -200.0, summary
