"""Discrete SAC on CartPole-v1: SAC with a categorical policy, whose expectations over actions are exact.

The twin critics output Q_i(s, .) for every action; the soft value sum_a' pi(a'|s') (min_i Q_target_i(s', a')
- alpha * log pi(a'|s')) and the actor's loss sum_a pi(a|s) (alpha * log pi(a|s) - min_i Q_i(s, a)) weigh all
A actions by pi instead of sampling one; the temperature keeps the entropy near scale * log A nats.
Paper: Christodoulou 2019, https://arxiv.org/abs/1910.07207   Run: python algos/sac_discrete_cartpole.py
Docs: docs/algorithms/sac_discrete_cartpole.md   Parent: sac_pendulum.py
Shapes: B batch, O obs dim, A discrete actions, N critics (2 by default, `--num-critics`).
"""

import atexit
import copy
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
from typing import Callable, NoReturn, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from tensorboard.compat.proto import event_pb2, summary_pb2
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
    """gymnasium id of a task with a discrete action space (CartPole-v1: terminates on a fall, truncated at 500)"""
    total_steps: int = 40000
    """environment steps of training"""
    eval_episodes: int = 10
    """episodes of the final greedy (argmax pi) evaluation, on start states of its own drawn from `--seed`"""
    # == SHARED: continuous_args ==
    hidden_dim: int = 64
    """units in each of the two hidden layers of the actor and of every critic"""
    buffer_size: int = 20000
    """transitions the replay buffer holds; the oldest are overwritten"""
    learning_starts: int = 1000
    """environment steps of uniformly random actions before the first update (warm-up)"""
    batch_size: int = 128
    """B, transitions sampled from the buffer per gradient update"""
    gradient_steps: int = 1
    """gradient updates per environment step after the warm-up (the update-to-data ratio)"""
    gamma: float = 0.99
    """gamma, discount factor of the TD target"""
    tau: float = 0.005
    """Polyak rate: theta_target <- tau * theta + (1 - tau) * theta_target, after every update"""
    q_lr: float = 1e-3
    """Adam step size of the critic(s)"""
    policy_lr: float = 1e-3
    """Adam step size of the actor"""
    save_buffer: bool = False
    """write the replay buffer to `<run dir>/buffer.npz` (from a Pendulum run: the offline dataset of cql_pendulum.py)"""
    # == ALGO: sac_discrete_cartpole ==
    alpha: float = 0.2
    """alpha, entropy temperature: its fixed value with `--no-autotune`, its initial value otherwise"""
    autotune: bool = True
    """tune log alpha by gradient descent so that the entropy H(pi(.|s)) stays near the target below"""
    alpha_lr: float = 1e-3
    """Adam step size of log alpha (with `--autotune`)"""
    target_entropy_scale: float = 0.5
    """target entropy H_target = scale * log(A) nats, a fraction of the uniform policy's log(A); in [0, 1)"""
    num_critics: int = 2
    """N critics; the TD target and the policy use their minimum (clipped double Q). 1: no minimum, so a fresh
    critic's optimism steers exploration as in DQN (Acrobot-v1 needs it; see the docs page)"""


# == ALGO: sac_discrete_cartpole ==
KEYS = ("observations", "actions", "rewards", "next_observations", "terminations")  # buffer and .npz keys


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One environment, float32 observations (MuJoCo's are float64); episode statistics arrive in
    `info["episode"]` when it ends."""
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(args.env_id, render_mode=render_mode))
    if env.observation_space.dtype != np.float32:  # the networks and the replay buffer are float32
        env = gym.wrappers.DtypeObservation(env, np.float32)
    return env


class Critic(nn.Module):
    """N independent Q(s, .) MLPs, one value per discrete action, evaluated together by batched matrix products."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_dim: int, num_critics: int):
        super().__init__()
        sizes = [obs_dim, hidden_dim, hidden_dim, n_actions]
        layers = [[nn.Linear(i, o) for _ in range(num_critics)] for i, o in zip(sizes, sizes[1:])]
        self.weights = nn.ParameterList(torch.stack([lin.weight.T for lin in ls]).detach() for ls in layers)
        self.biases = nn.ParameterList(torch.stack([lin.bias[None] for lin in ls]).detach() for ls in layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.expand(len(self.weights[0]), -1, -1)  # [B, O] -> [N, B, O]
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)  # [N, B, in] @ [N, in, out] -> [N, B, out]
            x = F.relu(x) if i < len(self.weights) - 1 else x
        return x  # [N, B, A]


# == SHARED: soft_update ==
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging theta_target <- tau * theta + (1 - tau) * theta_target (tau = 1: hard copy)."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), source.parameters()):
            target_param.lerp_(param, tau)


# == ALGO: sac_discrete_cartpole ==
class Actor(nn.Module):
    """Categorical policy pi(.|s) = softmax(logits(s)) over the A discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_dim: int):
        super().__init__()
        h = hidden_dim  # two hidden ReLU layers
        self.net = nn.Sequential(
            nn.Linear(obs_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n_actions)
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pi(a|s) and log pi(a|s) of EVERY action: the losses take the expectation over a, no sample."""
        log_prob = F.log_softmax(self.net(obs), dim=-1)  # [B, O] -> [B, A]
        return log_prob.exp(), log_prob  # [B, A], [B, A]

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The action sent to the environment: a sample while training, the most probable one to evaluate."""
        logits = self.net(obs)  # [B, O] -> [B, A]
        if deterministic:
            return logits.argmax(dim=-1)  # [B]
        return torch.distributions.Categorical(logits=logits).sample()  # [B]


def td_target(actor, critic, rewards, next_obs, terminations, gamma: float, alpha) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * sum_a' pi(a'|s') (min_i Q_target_i(s', a') - alpha * log pi(a'|s')),
    the exact expectation over the A actions, pi from the CURRENT actor, the TARGET critic. A truncation
    keeps the bootstrap; CartPole's fall (terminated) zeroes it."""
    with torch.no_grad():
        next_prob, next_log_prob = actor(next_obs)  # [B, O] -> [B, A], [B, A]
        next_q = critic(next_obs).min(dim=0).values - alpha * next_log_prob  # [N, B, A] -> [B, A]
        next_q = (next_prob * next_q).sum(dim=1)  # E_{a' ~ pi(.|s')}: [B, A] -> [B]
        return rewards + gamma * (1.0 - terminations) * next_q  # [B]


def make_agent(args: Args, env: gym.Env, device: torch.device) -> tuple:
    """Actor, twin critics and their Polyak target, log alpha, and the two Adam optimizers (log alpha
    rides with the actor's, at its own step size)."""
    obs_dim, n_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    actor = Actor(obs_dim, n_actions, args.hidden_dim).to(device)
    critic = Critic(obs_dim, n_actions, args.hidden_dim, args.num_critics).to(device)  # 2: twin critics
    log_alpha = torch.tensor(math.log(args.alpha), device=device, requires_grad=args.autotune)
    q_optimizer = torch.optim.Adam(critic.parameters(), lr=args.q_lr, fused=True)
    actor_groups = [{"params": list(actor.parameters())}, {"params": [log_alpha], "lr": args.alpha_lr}]
    actor_optimizer = torch.optim.Adam(actor_groups, lr=args.policy_lr, fused=True)
    return actor, critic, copy.deepcopy(critic), log_alpha, (q_optimizer, actor_optimizer)


def update(actor, critic, target_critic, log_alpha, optimizers, batch, args: Args) -> dict:
    """One discrete SAC gradient step on a batch: the twin critics, then the actor and log alpha, then the target."""
    obs, actions, rewards, next_obs, terminations = batch  # [B, O], [B], [B], [B, O], [B]
    q_optimizer, actor_optimizer = optimizers
    alpha = log_alpha.exp().detach()
    target = td_target(actor, target_critic, rewards, next_obs, terminations, args.gamma, alpha)  # [B]
    q = critic(obs)  # [B, O] -> [N, B, A]
    q = q.gather(2, actions.long()[None, :, None].expand(len(q), -1, 1))[..., 0]  # [N, B], the taken a
    q_loss = F.mse_loss(q, target.expand_as(q)) * len(q)  # sum over the N critics
    q_optimizer.zero_grad(set_to_none=True)
    q_loss.backward()
    q_optimizer.step()
    prob, log_prob = actor(obs)  # [B, O] -> [B, A], [B, A]
    with torch.no_grad():  # no sampled action to differentiate through: Q(s, .) is a constant here
        q_new = critic(obs).min(dim=0).values  # [B, O] -> [N, B, A] -> [B, A]
    actor_loss = (prob * (alpha * log_prob - q_new)).sum(dim=1).mean()  # E_s sum_a pi(a|s) (...)
    # DEVIATION: --target-entropy-scale 0.5 by default; the paper uses 0.98 (a near-uniform behaviour policy)
    target_entropy = args.target_entropy_scale * math.log(prob.shape[1])  # H_target = scale * log(A) nats
    log_prob = (prob * log_prob).sum(dim=1)  # [B, A] -> [B], E_a log pi(a|s) = -H(pi(.|s)), exact
    alpha_loss = -(log_alpha * (log_prob.detach() + target_entropy)).mean()  # J(alpha): up when H < target
    actor_optimizer.zero_grad(set_to_none=True)
    (actor_loss + alpha_loss).backward()  # disjoint: each loss detaches the other's variable
    actor_optimizer.step()  # moves log alpha only with --autotune (else it has no gradient)
    # DEVIATION: SAC's Polyak averaging every step; the paper (on Atari) copies the critic every 8000 steps
    soft_update(target_critic, critic, args.tau)
    return {"q_loss": q_loss, "q_values": q.mean(), "actor_loss": actor_loss, "alpha": alpha}


# == SHARED: continuous_evaluate ==
def evaluate(actor: nn.Module, args: Args, run_dir: str, device: torch.device, stop) -> list[float]:
    """Deterministic policy on start states of the evaluation's own; returns the finished episodes' returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    seeds = np.random.default_rng([args.seed, 1])  # no training reset, no other --seed starts from these
    returns = []
    for _ in range(args.eval_episodes):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        episode_return, done = 0.0, False
        while not done and not stop.is_set():
            action = actor.act(torch.as_tensor(obs, device=device)[None], deterministic=True)  # [1, A]
            obs, reward, terminated, truncated, _ = env.step(action[0].cpu().numpy())
            episode_return, done = episode_return + float(reward), terminated or truncated
        if not done:  # stopped mid-episode: only finished episodes count
            break
        returns.append(episode_return)
    env.close()
    return returns


# == ALGO: sac_discrete_cartpole ==
def main(args: Args) -> dict:
    check_args(args)
    device = torch_setup(args)
    env = make_env(args)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        fail(f"--env-id {args.env_id!r} has no discrete action space")
    obs_dim, n_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    h = args.hidden_dim
    weights = (4 + 6 * args.num_critics) * h * (obs_dim + n_actions + h)  # actor, N critics, targets, Adam
    nbytes = 4 * (args.buffer_size * (2 * obs_dim + 3) + weights)
    check_memory(
        nbytes + args.batch_size * 64 * h, "--buffer-size, --hidden-dim, --batch-size, --num-critics"
    )
    actor, critic, target_critic, log_alpha, optimizers = make_agent(args, env, device)
    if args.load_model:
        load_model(args.load_model, device, actor=actor, critic=critic, log_alpha=log_alpha)
        soft_update(target_critic, critic, 1.0)  # the target starts from the loaded critic
    shapes = ([obs_dim], [], [], [obs_dim], [])  # actions: the index as a float; terminations: 1.0 at a fall
    rb = {key: np.zeros([args.buffer_size, *shape], np.float32) for key, shape in zip(KEYS, shapes)}  # ring
    rng = np.random.default_rng(args.seed)
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    start_time, global_step, num_updates, recent_returns, losses = time.time(), 0, 0, [0.0], {}
    obs, _ = env.reset(seed=args.seed)  # [O]
    env.action_space.seed(args.seed)
    while global_step < args.total_steps and not stop.is_set():
        if global_step < args.learning_starts:
            action = env.action_space.sample()  # warm-up: uniform over the A actions
        else:
            action = actor.act(torch.as_tensor(obs, device=device)[None], deterministic=False)  # [1]
            action = action[0].cpu().numpy()  # [1] -> [], an action index sampled from pi(.|s)
        next_obs, reward, terminated, truncated, info = env.step(action)
        for array, value in zip(rb.values(), (obs, action, reward, next_obs, terminated)):
            array[global_step % args.buffer_size] = value  # next_obs is the true s', even at a time limit
        obs, global_step = next_obs, global_step + 1
        if terminated or truncated:  # log every episode, and the losses and SPS as of its end
            recent_returns = [*recent_returns[-9:], float(info["episode"]["r"])]
            writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
            writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)
            writer.add_scalar("charts/SPS", global_step / (time.time() - start_time), global_step)
            for name, value in losses.items():
                writer.add_scalar(f"losses/{name}", value.item(), global_step)
            progress.set_postfix(ret=f"{np.mean(recent_returns):.1f}")
            obs, _ = env.reset()
        progress.update(1)
        updates = args.gradient_steps if global_step > args.learning_starts else 0
        for _ in range(updates):
            if stop.is_set():  # a stop ends the update-to-data loop too
                break
            idx = rng.integers(min(global_step, args.buffer_size), size=args.batch_size)  # [B] uniform
            batch = [torch.from_numpy(array[idx]).to(device) for array in rb.values()]  # [B, ...] as in rb
            losses = update(actor, critic, target_critic, log_alpha, optimizers, batch, args)
            if not torch.isfinite(sum(losses.values())):  # any loss, Q or alpha NaN or inf
                fail(f"loss is not finite at step {global_step}")
            num_updates += 1
    progress.close()
    env.close()
    train_seconds, interrupted = time.time() - start_time, stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    returns = evaluate(actor, args, run_dir, device, stop)
    if args.save_model:
        save_model(f"{run_dir}/model.pt", actor=actor, critic=critic, log_alpha=log_alpha)
    if args.save_buffer:  # in ring order, the --save-buffer layout of the family (actions [n])
        size = min(global_step, args.buffer_size)
        write_atomic(f"{run_dir}/buffer.npz", lambda f: np.savez(f, **{k: a[:size] for k, a in rb.items()}))
    return finish_run(
        args, run_dir, writer, returns, total_steps=global_step, num_updates=num_updates,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
        train_return_last10=float(np.mean(recent_returns)), alpha=log_alpha.exp().item(),
    )  # fmt: skip


# == SHARED: continuous_checks ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    at_least = dict.fromkeys(["eval_episodes", "torch_threads", "hidden_dim", "buffer_size", "batch_size"], 1)
    check_common_args(
        args, at_least | {"total_steps": 0, "learning_starts": 0, "gradient_steps": 1}, ("gamma", "tau")
    )
    if not (args.q_lr > 0.0 and args.policy_lr > 0.0 and args.tau > 0.0):
        fail(f"--q-lr, --policy-lr and --tau must be > 0, got {args.q_lr}, {args.policy_lr}, {args.tau}")
    check_env(args.env_id, args.capture_video)
    check_algo_args(args)


# == ALGO: sac_discrete_cartpole ==
def check_algo_args(args: Args) -> None:
    if not 0.0 <= args.target_entropy_scale < 1.0:  # 1: only the uniform policy meets it, alpha grows forever
        fail(f"--target-entropy-scale must be in [0, 1), got {args.target_entropy_scale}")
    if not (args.alpha > 0.0 and args.alpha_lr > 0.0):
        fail(f"--alpha and --alpha-lr must be > 0, got {args.alpha}, {args.alpha_lr}")
    if args.num_critics < 1:
        fail(f"--num-critics must be >= 1, got {args.num_critics}")


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
