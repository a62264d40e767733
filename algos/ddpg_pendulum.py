"""DDPG on Pendulum-v1: a deterministic actor trained through the gradient of a learned Q.

The critic regresses onto r + gamma * Q_target(s', mu_target(s')); the actor climbs
Q(s, mu(s)); both targets trail by Polyak averaging; exploration adds Gaussian noise to mu(s).
The root of the continuous actor-critic family.
Paper: Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971
Run:  python algos/ddpg_pendulum.py
Docs: docs/algorithms/ddpg_pendulum.md   Parent: none (child: sac_pendulum.py)
Shapes: B batch, O obs dim, A action dim, N critics (1 here).
"""

import copy
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import NoReturn, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


@dataclass
class Args:
    # == SHARED: common_args ==
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of the experiment (run directory and W&B run name)"""
    seed: int = 1
    """seeds python, numpy, torch, the environments and their action spaces"""
    torch_deterministic: bool = True
    """use deterministic torch kernels (`torch.backends.cudnn.deterministic`)"""
    cuda: bool = True
    """use a GPU when one is present; the CPU otherwise, silently"""
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
    # == ENV: pendulum ==
    env_id: str = "Pendulum-v1"
    """gymnasium id of a task with a Box action space (Pendulum-v1: 200 steps, never terminates)"""
    total_steps: int = 20000
    """environment steps of training"""
    eval_episodes: int = 10
    """episodes of the final deterministic evaluation, on a fresh environment seeded from `--seed`"""
    # == SHARED: continuous_args ==
    torch_threads: int = 1
    """torch intra-op threads; these small networks update fastest on one"""
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
    """write the replay buffer to `<run dir>/buffer.npz`, the offline dataset cql_pendulum.py reads"""
    # == ALGO: ddpg_pendulum ==
    exploration_noise: float = 0.1
    """sigma of the Gaussian noise added to mu(s) while training, as a fraction of the half-range"""


# == SHARED: run_helpers ==
def fail(message: str) -> NoReturn:
    """Stop with one clear line and a non-zero exit status (CONVENTIONS 6)."""
    raise SystemExit(f"error: {message}")


def seed_everything(seed: int, torch_deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def start_run(args, env_id: str) -> tuple[str, SummaryWriter]:
    """Create the run directory, the TensorBoard writer and (with --track) the W&B run."""
    run_dir = os.path.join(args.runs_dir, f"{env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
    suffix = 0
    while os.path.exists(run_dir + (f"-{suffix}" if suffix else "")):
        suffix += 1
    run_dir += f"-{suffix}" if suffix else ""
    os.makedirs(run_dir)
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=asdict(args),
            name=os.path.basename(run_dir),
            dir=run_dir,
            save_code=True,
        )
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump(asdict(args), f, indent=2)
    writer = SummaryWriter(run_dir)
    table = "\n".join(f"|{key}|{value}|" for key, value in asdict(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return run_dir, writer


def finish_run(summary: dict, writer: SummaryWriter, track: bool) -> dict:
    """Close the loggers, write `summary.json` and print it as the last line of stdout."""
    writer.close()
    with open(os.path.join(summary["run_dir"], "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if track:
        import wandb

        wandb.finish()
    print(json.dumps(summary), flush=True)
    return summary


# == SHARED: continuous_parts ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    try:
        gym.spec(args.env_id)
    except Exception:
        fail(f"unknown --env-id {args.env_id!r}: gymnasium has no such environment")
    positive = "eval_episodes torch_threads hidden_dim buffer_size batch_size gradient_steps"
    for name, low in [("total_steps", 0), ("learning_starts", 0), *[(n, 1) for n in positive.split()]]:
        if getattr(args, name) < low:
            fail(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    for name in ("gamma", "tau"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            fail(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if not (args.q_lr > 0.0 and args.policy_lr > 0.0):
        fail(f"--q-lr and --policy-lr must be > 0, got {args.q_lr}, {args.policy_lr}")
    check_algo_args(args)


def make_env(env_id: str, render_mode: Optional[str] = None) -> gym.Env:
    """One environment; episode statistics arrive in `info["episode"]` when it ends."""
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, render_mode=render_mode))
    if not isinstance(env.action_space, gym.spaces.Box):
        fail(f"--env-id {env_id!r} has no continuous (Box) action space")
    return env


class Critic(nn.Module):
    """N independent Q(s, a) MLPs, evaluated together by batched matrix products (one call, not N)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, num_critics: int):
        super().__init__()
        sizes = [obs_dim + act_dim, hidden_dim, hidden_dim, 1]
        layers = [
            [nn.Linear(i, o) for _ in range(num_critics)] for i, o in zip(sizes, sizes[1:])
        ]  # default init
        self.weights = nn.ParameterList(torch.stack([lin.weight.T for lin in ls]).detach() for ls in layers)
        self.biases = nn.ParameterList(torch.stack([lin.bias[None] for lin in ls]).detach() for ls in layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=1).expand(len(self.weights[0]), -1, -1)  # [N, B, O + A]
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)  # [N, B, in] @ [N, in, out] -> [N, B, out]
            x = F.relu(x) if i < len(self.weights) - 1 else x
        return x[..., 0]  # [N, B, 1] -> [N, B]


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging theta_target <- tau * theta + (1 - tau) * theta_target (tau = 1: hard copy)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


# == ALGO: ddpg_pendulum ==
def check_algo_args(args: Args) -> None:
    if args.exploration_noise < 0.0:
        fail(f"--exploration-noise must be >= 0, got {args.exploration_noise}")


class Actor(nn.Module):
    """Deterministic policy mu(s) = scale * tanh(MLP(s)) + bias, inside the action bounds."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low, high):
        super().__init__()
        h = hidden_dim  # two hidden ReLU layers
        self.net = nn.Sequential(
            nn.Linear(obs_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, act_dim)
        )
        self.register_buffer("scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))  # [A]
        self.register_buffer("bias", torch.as_tensor((high + low) / 2, dtype=torch.float32))  # [A]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.net(obs)) + self.bias  # [B, O] -> [B, A]

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The action sent to the environment; DDPG's exploration noise is added by the caller."""
        return self(obs)  # [B, O] -> [B, A]


def td_target(actor, critic, rewards, next_obs, terminations, gamma: float) -> torch.Tensor:
    """DDPG target y = r + gamma * (1 - terminated) * Q_target(s', mu_target(s')), with the TARGET
    actor and critic passed in. Only a true termination zeroes the bootstrap; a truncation keeps it."""
    with torch.no_grad():
        next_q = critic(next_obs, actor(next_obs))[0]  # [B, O], [B, A] -> [1, B] -> [B]
        return rewards + gamma * (1.0 - terminations) * next_q  # [B]


# == SHARED: continuous_evaluate ==
def evaluate(actor: nn.Module, args: Args, run_dir: str, device: torch.device) -> np.ndarray:
    """Deterministic policy on a fresh environment seeded from args.seed; returns [episodes]."""
    env = make_env(args.env_id, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    returns = np.zeros(args.eval_episodes)  # [episodes]
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + 10_000 + episode)
        done = False
        while not done:
            action = actor.act(torch.as_tensor(obs, device=device)[None], deterministic=True)  # [1, A]
            obs, reward, terminated, truncated, _ = env.step(action[0].cpu().numpy())
            returns[episode] += float(reward)
            done = terminated or truncated
    env.close()
    return returns


# == ALGO: ddpg_pendulum ==
def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    env = make_env(args.env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high  # [A], [A]
    actor = Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    critic = Critic(obs_dim, act_dim, args.hidden_dim, num_critics=1).to(device)
    if args.load_model:
        try:
            state = torch.load(args.load_model, map_location=device, weights_only=True)
            actor.load_state_dict(state["actor"])
            critic.load_state_dict(state["critic"])
        except Exception as error:  # missing, not a state_dict, other shapes
            fail(f"cannot load --load-model {args.load_model!r}: {' '.join(str(error).split())}")
    target_actor, target_critic = copy.deepcopy(actor), copy.deepcopy(critic)
    q_optimizer = torch.optim.Adam(critic.parameters(), lr=args.q_lr, fused=True)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True)
    keys = ("observations", "actions", "rewards", "next_observations", "terminations")  # .npz keys too
    shapes = ([obs_dim], [act_dim], [], [obs_dim], [])  # terminations: 1.0 only at a true terminal state
    rb = {key: np.zeros([args.buffer_size, *shape], np.float32) for key, shape in zip(keys, shapes)}  # ring
    rng = np.random.default_rng(args.seed)
    noise_std = args.exploration_noise * (high - low) / 2  # [A] sigma in action units
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, global_step = False, time.time(), 0
    num_updates, recent_returns, losses = 0, [0.0], {}
    obs, _ = env.reset(seed=args.seed)  # [O]
    env.action_space.seed(args.seed)
    try:
        while global_step < args.total_steps:
            if global_step < args.learning_starts:
                action = env.action_space.sample()  # [A] warm-up: uniform over the bounds
            else:
                action = actor.act(torch.as_tensor(obs, device=device)[None], deterministic=False)  # [1, A]
                noise = rng.normal(0.0, noise_std)  # [A] Gaussian exploration, uncorrelated in time
                action = np.clip(action[0].cpu().numpy() + noise, low, high)  # [1, A] -> [A]
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
                    writer.add_scalar(f"losses/{name}", value.mean().item(), global_step)
                progress.set_postfix(ret=f"{np.mean(recent_returns):.1f}")
                obs, _ = env.reset()
            progress.update(1)
            for _ in range(args.gradient_steps if global_step > args.learning_starts else 0):
                idx = rng.integers(min(global_step, args.buffer_size), size=args.batch_size)  # [B] uniform
                batch = [torch.from_numpy(array[idx]).to(device) for array in rb.values()]
                b_obs, b_actions, b_rewards, b_next_obs, b_terminations = batch  # shapes as in rb: [B, ...]
                target = td_target(
                    target_actor, target_critic, b_rewards, b_next_obs, b_terminations, args.gamma
                )
                q = critic(b_obs, b_actions)  # [B, O], [B, A] -> [N, B]
                q_loss = F.mse_loss(q, target.expand_as(q)) * len(q)  # sum over the N critics
                if not torch.isfinite(q_loss):
                    fail(f"loss is {q_loss.item()} at step {global_step}")
                q_optimizer.zero_grad(set_to_none=True)
                q_loss.backward()
                q_optimizer.step()
                critic.requires_grad_(False)  # the actor needs dQ/da only: skip the critic's weight grads
                actor_loss = -critic(b_obs, actor(b_obs))[0].mean()  # [B, A] -> [1, B] -> scalar
                actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward()
                actor_optimizer.step()
                critic.requires_grad_(True)
                soft_update(target_critic, critic, args.tau)
                soft_update(target_actor, actor, args.tau)
                num_updates += 1
                losses = {"q_loss": q_loss, "q_values": q, "actor_loss": actor_loss}
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    env.close()
    train_seconds = time.time() - start_time
    returns = evaluate(actor, args, run_dir, device)
    if args.save_model:  # state_dicts only (CONVENTIONS 5)
        torch.save(
            {"actor": actor.state_dict(), "critic": critic.state_dict()}, os.path.join(run_dir, "model.pt")
        )
    if args.save_buffer:
        size = min(global_step, args.buffer_size)  # in ring order, the format cql_pendulum.py reads
        np.savez(os.path.join(run_dir, "buffer.npz"), **{key: array[:size] for key, array in rb.items()})
    summary = {
        "algo": os.path.basename(__file__)[: -len(".py")],
        "env_id": args.env_id,
        "seed": args.seed,
        "total_steps": global_step,
        "num_updates": num_updates,
        "train_seconds": round(train_seconds, 3),
        "steps_per_second": round(global_step / max(train_seconds, 1e-9), 1),
        "eval_episodes": args.eval_episodes,
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "interrupted": interrupted,
        "run_dir": run_dir,
        "train_return_last10": float(np.mean(recent_returns)),
    }
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
