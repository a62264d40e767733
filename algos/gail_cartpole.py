"""GAIL: generative adversarial imitation learning on CartPole, without the environment's reward.

PPO with a learned reward: a discriminator D(s, a) learns to tell expert (state, action) pairs from the
student's, and PPO trains the student on r = -log(1 - D(s, a)) alone (or log D, `--reward-form negative`):
it is paid for looking like the expert. The expert is a PPO teacher trained first on the true reward, then
discarded (or `--expert-data`).
Paper: Ho & Ermon 2016, https://arxiv.org/abs/1606.03476   Run: python algos/gail_cartpole.py
Docs: docs/algorithms/gail_cartpole.md   Parent: ppo_cartpole.py (PPO with the discriminator's reward)
Shapes: T steps, E envs, B batch (T*E), M minibatch, N expert transitions, O obs dim, A actions.
"""

import atexit
import functools
import json
import math
import os
import random
import signal
import struct
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Literal, NoReturn, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from tensorboard.compat.proto import event_pb2, summary_pb2
from torch.distributions import Categorical
from tqdm import tqdm


@dataclass
class Args:
    # == SHARED: common_args ==
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of the experiment (run directory and W&B run name)"""
    seed: int = 1
    """seeds python, numpy (and torch), the environments and their action spaces; in [0, 2**32)"""
    track: bool = False
    """log to Weights & Biases (works offline with `WANDB_MODE=offline`)"""
    wandb_project_name: str = "rl-algos"
    """W&B project"""
    wandb_entity: Optional[str] = None
    """W&B entity (team); None is your default entity"""
    capture_video: bool = False
    """record the evaluation episodes to `<run dir>/videos/`"""
    save_model: bool = False
    """save the learned parameters to `<run dir>/model.pt` (`model.npz` for tables)"""
    load_model: Optional[str] = None
    """start from saved parameters; with `--total-steps 0` (`--max-iterations 0` for dynamic programming) it only evaluates"""
    runs_dir: str = "runs"
    """parent folder of the run directories"""
    progress: bool = True
    """show a progress bar on a terminal (`--no-progress` silences it)"""
    # == SHARED: torch_args ==
    torch_deterministic: bool = True
    """use deterministic torch kernels (`torch.backends.cudnn.deterministic`)"""
    cuda: bool = True
    """use a GPU when one is present; the CPU otherwise, silently"""
    torch_threads: int = 1
    """torch intra-op threads; the small networks here update fastest on one (measure before raising it)"""
    # == ENV: cartpole ==
    env_id: str = "CartPole-v1"
    """gymnasium id; any env with a Box observation and a Discrete action space"""
    num_envs: int = 8
    """E, environments stepped side by side (SyncVectorEnv), for the teacher and the student"""
    total_steps: int = 100000
    """student environment steps (over all envs); the teacher's steps are `--teacher-steps`"""
    eval_episodes: int = 10
    """episodes of the final greedy evaluation of the student (true environment return)"""
    # == ALGO: gail_cartpole ==
    expert_data: Optional[str] = None
    """`.npz` with `observations` [N, O] and `actions` [N] (ints); None trains a PPO teacher instead"""
    teacher_steps: int = 100000
    """environment steps of the PPO teacher (on the true reward); unused with `--expert-data`"""
    expert_episodes: int = 8
    """greedy teacher episodes kept as demonstrations (N = their total length, saved as `expert.npz`)"""
    num_steps: int = 128
    """T, steps per env per rollout; B = T * E transitions per PPO update (teacher and student)"""
    learning_rate: float = 2.5e-3
    """Adam step size of the actor-critic (teacher and student), annealed linearly to 0 in each phase"""
    gamma: float = 0.99
    """discount factor gamma"""
    gae_lambda: float = 0.95
    """GAE lambda: 0 is one-step TD, 1 is Monte Carlo"""
    num_minibatches: int = 4
    """minibatches per PPO epoch, M = ceil(B / num_minibatches) transitions each"""
    update_epochs: int = 4
    """K, passes over each rollout in the PPO update"""
    clip_coef: float = 0.2
    """epsilon of the clipped surrogate objective"""
    vf_coef: float = 0.5
    """weight of the value loss in the PPO loss"""
    ent_coef: float = 0.01
    """weight of the entropy bonus in every PPO loss here (ppo_cartpole's default; why: bc_cartpole's docs)"""
    hidden_dim: int = 64
    """width of the two hidden layers of the actor, the critic and the discriminator"""
    disc_learning_rate: float = 1e-4
    """Adam step size of the discriminator D, annealed linearly to 0 with the student's"""
    disc_updates: int = 4
    """discriminator gradient steps per rollout, each on `--batch-size` expert and student pairs"""
    batch_size: int = 256
    """pairs from each side (expert, student) in one discriminator gradient step"""
    reward_form: Literal["positive", "negative"] = "positive"
    """positive: r = -log(1 - D) > 0, GAIL's, a bonus for every step (right where lasting is the task, as on
    CartPole); negative: r = log D < 0, a cost for every step (right where ending the episode is the goal, as on
    Acrobot)"""


def make_env(env_id: str, seed: int, video_dir: Optional[str] = None) -> Callable[[], gym.Env]:
    """A thunk for SyncVectorEnv: one env with its true episode statistics (logged, never learned from)."""

    def thunk():
        env = gym.make(env_id, render_mode="rgb_array" if video_dir else None)
        if video_dir:
            env = gym.wrappers.RecordVideo(env, video_dir, lambda e: True, disable_logger=True)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env.action_space.seed(seed)
        return env

    return thunk


def mlp(n_in: int, hidden_dim: int, n_out: int, out_std: float) -> nn.Sequential:
    """Two tanh hidden layers; orthogonal init (gain sqrt 2, `out_std` on the output layer), zero biases."""
    layers = [nn.Linear(n_in, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, hidden_dim), nn.Tanh()]
    for linear in (layers := [*layers, nn.Linear(hidden_dim, n_out)])[::2]:
        nn.init.orthogonal_(linear.weight, out_std if linear is layers[-1] else np.sqrt(2))
        nn.init.zeros_(linear.bias)
    return nn.Sequential(*layers)


class Agent(nn.Module):
    """Actor pi(a|s) as logits and critic V(s), two separate tanh MLPs."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_dim: int):
        super().__init__()
        self.critic = mlp(obs_dim, hidden_dim, 1, out_std=1.0)
        self.actor = mlp(obs_dim, hidden_dim, n_actions, out_std=0.01)

    def get_action_and_value(self, x: torch.Tensor, action: Optional[torch.Tensor] = None):
        dist = Categorical(logits=self.actor(x))  # [B, O] -> [B, A]
        action = dist.sample() if action is None else action  # [B]
        return action, dist.log_prob(action), self.critic(x).squeeze(-1), dist.entropy()  # [B] each


class Discriminator(nn.Sequential):
    """D(s, a) = sigmoid(logit): the probability that the pair (s, a) came from the expert."""

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(actions, self[0].in_features - obs.shape[-1]).float()  # [..] -> [.., A]
        return super().forward(torch.cat([obs, one_hot], -1)).squeeze(-1)  # [.., O + A] -> [..] logits


def discriminator_loss(expert_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: expert pairs are labelled 1, student pairs 0."""
    expert = F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
    return expert + F.binary_cross_entropy_with_logits(student_logits, torch.zeros_like(student_logits))


def discriminator_reward(logits: torch.Tensor, form: str = "positive") -> torch.Tensor:
    """r(s, a) = -log(1 - D(s, a)) = softplus(logit) > 0, or with form "negative" log D(s, a) = -softplus(-logit)
    < 0: a function of D alone, never of the env reward. Both grow with D; they differ in the sign, which decides
    whether a longer episode earns more (positive) or less (negative): the absorbing-state bias of either."""
    if form == "negative":
        return -F.softplus(-logits)  # [T, E] -> [T, E]
    return F.softplus(logits)  # [T, E] -> [T, E]


def update_discriminator(discriminator, optimizer, expert: tuple, obs, actions, args: Args) -> torch.Tensor:
    """`--disc-updates` steps, each on `--batch-size` random expert pairs against as many student pairs."""
    loss = torch.zeros(())
    for _ in range(args.disc_updates):
        e = torch.randint(len(expert[1]), (args.batch_size,), device=obs.device)  # [b] expert indices
        s = torch.randint(len(actions), (args.batch_size,), device=obs.device)  # [b] student indices
        expert_logits = discriminator(expert[0][e], expert[1][e])  # [b, O], [b] -> [b]
        loss = discriminator_loss(expert_logits, discriminator(obs[s], actions[s]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.detach()


def compute_gae(rewards, ro: dict, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over [T, E]; ro["next_values"] is V(s_{t+1}), from the final observation at a truncation."""
    deltas = rewards + gamma * ro["next_values"] * (1.0 - ro["terminations"]) - ro["values"]  # [T, E]
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[0])  # [T, E], [E]
    for t in reversed(range(rewards.shape[0])):
        last = deltas[t] + gamma * gae_lambda * (1.0 - ro["dones"][t]) * last  # an episode end cuts the sum
        advantages[t] = last
    return advantages, advantages + ro["values"]  # [T, E] advantages, returns


def collect_rollout(envs, agent: Agent, next_obs: torch.Tensor, num_steps: int):
    """T steps in every env: rollout, env rewards (kept apart), episodes (t, return, length), next obs."""
    keys = ("obs", "actions", "logprobs", "values", "terminations", "dones", "real_next_obs")
    ro, episodes, env_rewards = {k: [] for k in keys}, [], np.zeros((num_steps, len(next_obs)), np.float32)
    for t in range(num_steps):
        with torch.no_grad():
            action, logprob, value, _ = agent.get_action_and_value(next_obs)  # [E, O] -> [E] each
        obs, env_rewards[t], terminated, truncated, infos = envs.step(action.cpu().numpy())
        real_next_obs = obs.copy()  # [E, O] SAME_STEP autoreset: `obs` is the reset obs where one ended
        for i in np.flatnonzero(terminated | truncated):
            real_next_obs[i] = infos["final_obs"][i]
        if "final_info" in infos:
            info, ended = infos["final_info"]["episode"], infos["final_info"]["_episode"]
            episodes += [(t, r, n) for r, n in zip(info["r"][ended], info["l"][ended])]
        step = (next_obs, action, logprob, value, terminated, terminated | truncated, real_next_obs)
        for key, x in zip(keys, step):
            ro[key].append(torch.as_tensor(x, dtype=torch.long if key == "actions" else torch.float32))
        next_obs = torch.as_tensor(obs, dtype=torch.float32, device=next_obs.device)  # [E, O]
    ro = {key: torch.stack(value).to(next_obs.device) for key, value in ro.items()}  # [T, E] or [T, E, O]
    with torch.no_grad():
        ro["next_values"] = agent.critic(ro["real_next_obs"]).squeeze(-1)  # [T, E, O] -> [T, E]
    return ro, env_rewards, episodes, next_obs


def ppo_update(agent: Agent, optimizer, ro: dict, advantages, returns, args: Args) -> dict:
    """K epochs of clipped-surrogate PPO over the flattened rollout; returns the last minibatch's losses."""
    obs, actions = ro["obs"].flatten(0, 1), ro["actions"].flatten()  # [T, E, O] -> [B, O]; [T, E] -> [B]
    logprobs, advantages, returns = ro["logprobs"].flatten(), advantages.flatten(), returns.flatten()  # [B]
    clip, minibatch = args.clip_coef, -(-len(obs) // args.num_minibatches)  # ceil(B / num_minibatches)
    for _ in range(args.update_epochs):
        for mb in torch.randperm(len(obs), device=obs.device).split(minibatch):  # [M]
            _, new_logprob, new_value, entropy = agent.get_action_and_value(obs[mb], actions[mb])  # [M] each
            ratio = (new_logprob - logprobs[mb]).exp()  # [M]
            adv = advantages[mb]  # [M], normalised per minibatch (a minibatch of 1 has no spread)
            adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(adv) > 1 else adv
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            v_loss = 0.5 * ((new_value - returns[mb]) ** 2).mean()
            loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * entropy.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {"loss": loss.item(), "policy_loss": pg_loss.item(), "value_loss": v_loss.item()}


def evaluate(agent: Agent, args: Args, episodes: int, stream: int, stop, video_dir: Optional[str] = None):
    """Greedy policy on start states of its own (stream 1: the final evaluation, 2: the teacher's
    demonstrations; never a training reset): returns of finished episodes, observations [N, O], actions [N]."""
    env, returns, observations, actions = make_env(args.env_id, args.seed, video_dir)(), [], [], []
    seeds, device = np.random.default_rng([args.seed, stream]), next(agent.parameters()).device
    for _ in range(episodes):
        (obs, _), done = env.reset(seed=int(seeds.integers(2**31))), False
        while not done and not stop.is_set():
            with torch.no_grad():
                logits = agent.actor(torch.as_tensor(obs, dtype=torch.float32, device=device))  # [O] -> [A]
            observations.append(obs)
            actions.append(int(logits.argmax()))
            obs, _, terminated, truncated, info = env.step(actions[-1])
            done = terminated or truncated
        if not done:  # stopped mid-episode: only finished episodes count
            break
        returns.append(float(info["episode"]["r"]))  # RecordEpisodeStatistics: the true return
    env.close()
    observations = np.array(observations, np.float32).reshape(-1, *env.observation_space.shape)  # [N, O]
    return returns, observations, np.array(actions, np.int64)  # [n], [N, O], [N]


def main(args: Args) -> dict:
    check_args(args)
    device = torch_setup(args)
    spec, h = gym.spec(args.env_id), args.hidden_dim
    o = int(np.prod(gym.make(args.env_id).observation_space.shape))  # a Python int: no int64 wrap below
    check_memory(  # envs and rollouts (lists, then stacked); three networks with Adam; demonstrations
        args.num_envs * (50_000 + 64 * args.num_steps * (o + 4)) + 64 * h * (o + h + 8) + 16 * args.batch_size
        * (o + 8) + 8 * args.expert_episodes * (spec.max_episode_steps or 10**4) * (o + 2), "--num-envs, "
        "--num-steps, --hidden-dim, --batch-size, --expert-episodes")  # fmt: skip
    thunks = [make_env(args.env_id, args.seed + i) for i in range(args.num_envs)]
    envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    if not isinstance(action_space, gym.spaces.Discrete) or len(obs_space.shape) != 1:
        fail(f"--env-id {args.env_id!r} needs a flat Box observation and a Discrete action space")
    obs_dim, n_actions = obs_space.shape[0], int(action_space.n)
    agent = Agent(obs_dim, n_actions, args.hidden_dim).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    discriminator = Discriminator(*mlp(obs_dim + n_actions, args.hidden_dim, 1, out_std=1.0)).to(device)
    disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.disc_learning_rate)
    expert = load_expert(args.expert_data, obs_dim, n_actions) if args.expert_data else None
    if args.load_model:
        load_model(args.load_model, device, agent=agent, discriminator=discriminator)
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    start_time, global_step, num_updates = time.time(), 0, 0
    E, num_iterations = args.num_envs, args.total_steps // (batch := args.num_envs * args.num_steps)  # B
    expert_return, acc_expert, acc_student = None, None, None
    if expert is None and num_iterations > 0:  # the teacher: PPO on the TRUE reward, then discarded
        teacher = Agent(obs_dim, n_actions, args.hidden_dim).to(device)
        next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32).to(device)
        teacher_optimizer = torch.optim.Adam(teacher.parameters(), lr=args.learning_rate, eps=1e-5)
        for i in range(teacher_iterations := args.teacher_steps // batch):
            if stop.is_set():
                break
            teacher_optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - i / teacher_iterations)
            ro, env_rewards, episodes, next_obs = collect_rollout(envs, teacher, next_obs, args.num_steps)
            for t, episode_return, _ in episodes:  # x: teacher env steps
                writer.add_scalar("teacher/episodic_return", episode_return, i * batch + (t + 1) * E)
            rewards = ro["values"].new_tensor(env_rewards)  # [T, E] the TRUE reward: the teacher's only
            advantages, returns = compute_gae(rewards, ro, args.gamma, args.gae_lambda)  # [T, E] each
            loss = ppo_update(teacher, teacher_optimizer, ro, advantages, returns, args)["loss"]
            if not math.isfinite(loss):
                fail(f"the teacher's PPO loss is {loss} at teacher step {(i + 1) * batch}")
        # the demonstrations: the teacher's greedy episodes, on start states of their own
        expert_returns, *expert = evaluate(teacher, args, args.expert_episodes, 2, stop)
        expert_return = float(np.mean(expert_returns)) if expert_returns else None
        if not stop.is_set():
            write_atomic(
                f"{run_dir}/expert.npz", lambda f: np.savez(f, observations=expert[0], actions=expert[1])
            )
    expert_obs, expert_actions = (torch.as_tensor(x).to(device) for x in expert or ([], []))  # [N, O], [N]
    next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32).to(device)  # [E, O]
    for iteration in range(num_iterations):
        if stop.is_set():
            break
        for opt, lr in ((optimizer, args.learning_rate), (disc_optimizer, args.disc_learning_rate)):
            opt.param_groups[0]["lr"] = lr * (1.0 - iteration / num_iterations)  # both anneal to 0
        ro, _, episodes, next_obs = collect_rollout(envs, agent, next_obs, args.num_steps)  # _: env rewards
        for t, episode_return, length in episodes:  # the true return: logged, never learned from
            writer.add_scalar("charts/episodic_return", episode_return, step := global_step + (t + 1) * E)
            writer.add_scalar("charts/episodic_length", length, step)
        global_step += batch
        obs, actions = ro["obs"].flatten(0, 1), ro["actions"].flatten()  # [B, O], [B]
        disc_loss = update_discriminator(
            discriminator, disc_optimizer, (expert_obs, expert_actions), obs, actions, args
        )
        with torch.no_grad():
            student_logits = discriminator(ro["obs"], ro["actions"])  # [T, E, O], [T, E] -> [T, E]
            rewards = discriminator_reward(student_logits, args.reward_form)  # [T, E]: the only reward
            acc_expert = (discriminator(expert_obs, expert_actions) > 0).float().mean().item()  # [N] -> ()
            acc_student = (student_logits < 0).float().mean().item()  # [T, E] -> ()
        advantages, returns = compute_gae(rewards, ro, args.gamma, args.gae_lambda)  # [T, E] each
        losses = ppo_update(agent, optimizer, ro, advantages, returns, args)
        losses["discriminator_loss"] = disc_loss.item()
        if not all(map(math.isfinite, losses.values())):
            fail(f"a loss is not finite at step {global_step}: {losses}")
        num_updates += 1
        charts = dict(disc_accuracy_expert=acc_expert, disc_accuracy_student=acc_student)
        charts |= dict(gail_reward=rewards.mean().item(), SPS=global_step / (time.time() - start_time))
        for name, value in [*(("losses/" + k, v) for k, v in losses.items() if k != "loss"), *charts.items()]:
            writer.add_scalar(name if "/" in name else "charts/" + name, value, global_step)
        progress.update(batch)
    progress.close()
    envs.close()
    train_seconds = time.time() - start_time
    interrupted = stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    video_dir = f"{run_dir}/videos" if args.capture_video else None
    returns, _, _ = evaluate(agent, args, args.eval_episodes, 1, stop, video_dir)
    if args.save_model:
        save_model(f"{run_dir}/model.pt", agent=agent, discriminator=discriminator)
    with torch.no_grad():  # imitation, not survival: the greedy student's actions on the expert's own states
        hits = (
            agent.actor(expert_obs).argmax(-1) == expert_actions if len(expert_obs) else torch.zeros(0)
        )  # [N]
    return finish_run(
        args, run_dir, writer, returns, total_steps=global_step, num_updates=num_updates,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
        expert_transitions=len(expert_actions), expert_return=expert_return,
        disc_accuracy_expert=acc_expert, disc_accuracy_student=acc_student,
        expert_action_agreement=hits.float().mean().item(),
    )  # fmt: skip


def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    counts = {name: 1 for name, value in asdict(args).items() if type(value) is int and name != "seed"}
    at_least = counts | dict(total_steps=0, teacher_steps=0, disc_updates=0, vf_coef=0.0, ent_coef=0.0)
    check_common_args(args, at_least, ("gamma", "gae_lambda"))
    for name in ("learning_rate", "disc_learning_rate", "clip_coef"):
        if not getattr(args, name) > 0.0:
            fail(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    for name in ("update_epochs", "disc_updates"):  # inner loops a stop cannot cut: bound them
        if getattr(args, name) > 10_000:
            fail(f"--{name.replace('_', '-')} must be <= 10000 per rollout, got {getattr(args, name)}")
    check_env(args.env_id, args.capture_video)


def load_expert(path: str, obs_dim: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """`--expert-data`: observations [N, O] of a number type, finite; integer actions [N] in [0, A)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            observations, actions = data["observations"], data["actions"]
    except Exception as error:  # missing, not an npz, missing keys, object arrays
        fail(f"cannot load --expert-data {path!r}: {type(error).__name__}: {error}")
    ok = observations.dtype.kind in "biuf" and observations.shape[1:] == (obs_dim,) and len(actions) > 0
    ok = ok and actions.shape == (len(observations),) and np.issubdtype(actions.dtype, np.integer)
    if not (ok and np.isfinite(observations).all() and actions.min() >= 0 and actions.max() < n_actions):
        fail(
            f"--expert-data {path!r}: need finite observations [N>0, {obs_dim}], int actions [N] < {n_actions}"
        )
    return observations.astype(np.float32), actions.astype(np.int64)


# == SHARED: run_helpers ==
def fail(message: str) -> NoReturn:
    """Stop with one clear line and a non-zero exit status (CONVENTIONS 6)."""
    raise SystemExit(f"error: {' '.join(message.split())}")


def check_common_args(args, at_least: dict, unit_interval: tuple = ()) -> None:
    """Stop on what no run can use: NaN or inf in any field, a seed outside [0, 2**32), a field below its
    minimum (`at_least`) or outside [0, 1] (`unit_interval`)."""
    for name, value in asdict(args).items():
        items = value if isinstance(value, tuple) else [value]
        if any(isinstance(x, float) and not math.isfinite(x) for x in items):
            fail(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    bounds = {"seed": (0, 2**32 - 1), **{n: (low, math.inf) for n, low in at_least.items()}}
    for name, (low, high) in (bounds | {n: (0.0, 1.0) for n in unit_interval}).items():
        if not low <= getattr(args, name) <= high:
            fail(f"--{name.replace('_', '-')} must be in [{low}, {high}], got {getattr(args, name)}")


def check_memory(nbytes: float, flags: str) -> None:
    """Stop before allocating when an estimate of the buffers exceeds this machine's physical memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else math.inf
    if nbytes > total:
        fail(f"{flags} would need {nbytes / 2**30:,.1f} GiB of memory, more than this machine has")


def write_atomic(path: str, write: Callable) -> None:
    """`write(file)` to a temporary name, then rename: a run killed outright never leaves half a file."""
    with open(path + ".tmp", "wb") as f:
        write(f)
    os.replace(path + ".tmp", path)


def start_run(args, env_id: str) -> tuple[str, "EventWriter", threading.Event]:
    """Seed python and numpy; create the run directory with `args.json`, the TensorBoard writer, the W&B run.
    From here Ctrl-C (SIGINT) and SIGTERM only set the returned event, which the loops read between steps: a
    stop at any moment ends training, then the evaluation, and a second one cannot cut a file."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    name = f"{env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = base = os.path.join(args.runs_dir, name)
    for suffix in range(1, 10**6):  # runs started in the same second get -1, -2, ..., even side by side:
        try:  # makedirs itself claims the name, no check before it that a parallel run could pass too
            os.makedirs(run_dir)
            break
        except FileExistsError:
            run_dir = f"{base}-{suffix}"
        except OSError as error:  # a file, a read-only disk, no permission: nothing has been written
            fail(f"--runs-dir {args.runs_dir!r} cannot be written: {error.strerror}")
    if args.track:
        import wandb

        kwargs = dict(project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args))
        wandb.init(**kwargs, name=os.path.basename(run_dir), dir=run_dir, save_code=True)
        wandb.define_metric("global_step", hidden=True)
        wandb.define_metric("*", step_metric="global_step")  # the x-axis of every chart, as in TensorBoard
    write_atomic(f"{run_dir}/args.json", lambda f: f.write(json.dumps(asdict(args), indent=2).encode()))
    stop, main_thread = threading.Event(), threading.current_thread() is threading.main_thread()
    for sig in (signal.SIGINT, signal.SIGTERM) if main_thread else ():  # only the main thread gets signals
        if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job (nohup, &) keeps ignoring it
            signal.signal(sig, lambda signum, frame: stop.set())
    return run_dir, EventWriter(run_dir, wandb if args.track else None), stop


def finish_run(args, run_dir: str, writer: "EventWriter", returns: list, **figures) -> dict:
    """Write the summary (CONVENTIONS 4) to `summary.json` and print it as the last line of stdout: the
    evaluation over the episodes that finished, NaN or inf as null. A stop after this is ignored."""
    mean, std = (float(np.mean(returns)), float(np.std(returns))) if len(returns) else (None, None)
    sps = round(figures["total_steps"] / max(figures["train_seconds"], 1e-9), 1)
    summary = {"algo": os.path.basename(__file__)[:-3], "env_id": args.env_id, "seed": args.seed, **figures}
    summary |= {"steps_per_second": sps, "eval_episodes": len(returns), "eval_return_mean": mean}
    summary |= {"eval_return_std": std, "run_dir": run_dir}
    summary = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}
    writer.close()
    write_atomic(f"{run_dir}/summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    if args.track:
        import wandb

        wandb.finish()
    print(json.dumps(summary), flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # all is written: a late stop must not fail the exit
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return summary


class EventWriter:
    """Scalars in TensorBoard's event-file format (`tensorboard --logdir runs`), and to W&B with `--track`.
    Written here rather than with `tensorboard.summary.Writer`, whose import alone takes longer than a bandit
    run: a record is the data's length, its masked CRC-32C, a serialised `Event` protobuf, the data's CRC."""

    def __init__(self, run_dir: str, wandb=None):
        # unbuffered: each record reaches the file whole, at once (TensorBoard shows the run live; a kill loses none)
        self.file = open(f"{run_dir}/events.out.tfevents.{int(time.time())}.{os.getpid()}", "wb", buffering=0)
        self.wandb, self.row = wandb, {}
        if wandb is not None:  # a run that fails or raises still sends its last row, before wandb's exit hook
            atexit.register(self.send_row)
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        value, step = float(value), int(step)  # numpy and torch scalars too
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        self.write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        if self.wandb is not None:  # one W&B row per step, not per scalar (a wandb.log call takes 0.3 ms)
            if self.row and (tag in self.row or self.row["global_step"] != step):
                self.send_row()
            self.row |= {tag: value, "global_step": step}

    def send_row(self) -> None:
        """Log the W&B row gathered so far (one step's scalars), if any and while the W&B run is open."""
        if self.row and self.wandb.run is not None:
            self.wandb.log(self.row)
            self.row = {}

    def write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self.file.write(header + masked_crc32c(header) + data + masked_crc32c(data))

    def close(self) -> None:
        if self.wandb is not None:
            self.send_row()
            atexit.unregister(self.send_row)
        self.file.close()


def masked_crc32c(data: bytes) -> bytes:
    """CRC-32C (Castagnoli) of `data`, rotated and offset as TFRecord files store it, 4 bytes little-endian."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return struct.pack("<I", ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF)


CRC32C_TABLE = [functools.reduce(lambda c, _: c >> 1 ^ 0x82F63B78 * (c & 1), range(8), n) for n in range(256)]


# == SHARED: torch_helpers ==
def torch_setup(args) -> torch.device:
    """Seed torch and choose its kernels, thread count and device (the torch fields of Args)."""
    if not 1 <= args.torch_threads <= (os.cpu_count() or 1):
        fail(f"--torch-threads must be in [1, {os.cpu_count()}], the cores here; got {args.torch_threads}")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")


def load_model(path: str, device: torch.device, **parts) -> None:
    """Load `--load-model` into `parts` (modules, or tensors copied in place); one line on a missing or
    corrupt file, a pickle (weights_only refuses to run it), other keys or shapes, or NaN and inf."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch warns before it refuses a pickle; the line below says why
            state = torch.load(path, map_location=device, weights_only=True)
            for name, part in parts.items():
                part.load_state_dict(state[name]) if isinstance(part, nn.Module) else part.copy_(state[name])
    except Exception as error:
        fail(f"cannot load --load-model {path!r}: {type(error).__name__}: {error}")
    flat = [v for p in state.values() for v in (p.values() if isinstance(p, dict) else [p])]
    if not all(torch.isfinite(v).all() for v in flat if torch.is_tensor(v) and v.is_floating_point()):
        fail(f"--load-model {path!r} holds NaN or inf")


def save_model(path: str, **parts) -> None:
    """state_dicts and tensors, never pickled modules (CONVENTIONS 5), written atomically."""
    state = {name: p.state_dict() if isinstance(p, nn.Module) else p.detach() for name, p in parts.items()}
    write_atomic(path, lambda f: torch.save(state, f))


# == SHARED: gym_helpers ==
def check_env(env_id: str, capture_video: bool) -> None:
    """Build the environment once: an unknown id, or one whose extra is not installed, stops here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's deprecation notes for old versions
            gym.make(env_id, render_mode="rgb_array" if capture_video else None).close()
    except gym.error.DependencyNotInstalled as error:
        fail(f"--env-id {env_id!r} needs a package that is not installed: {str(error).splitlines()[0]}")
    except Exception as error:
        fail(f"cannot make --env-id {env_id!r}: {type(error).__name__}: {str(error).splitlines()[0]}")


# == SHARED: entry_point ==
if __name__ == "__main__":
    main(tyro.cli(Args))
