"""Double DQN on Pendulum-v1: the online network picks a', the target network scores it.

DQN's max_a' Q_target(s', a') both selects and evaluates a' with the same noisy estimate, so
it is biased upwards; Double DQN decouples the two: y = r + gamma * Q_target(s', argmax_a' Q(s', a')).
Everything else is dqn_pendulum.py, line for line.
Paper: van Hasselt, Guez, Silver 2016, https://arxiv.org/abs/1509.06461
Run:  python algos/ddqn_pendulum.py --total-steps 20000
Docs: docs/algorithms/ddqn_pendulum.md   Parent: dqn_pendulum.py
Shapes: B batch, E envs, O obs dim, A discrete actions.
"""

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal, NoReturn, Optional

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
    """gymnasium id of a task with a one-dimensional continuous action (Pendulum-v1 ends after 200 steps)"""
    total_steps: int = 20000
    """environment steps, summed over the E parallel environments"""
    eval_episodes: int = 10
    """episodes of the final greedy evaluation, on a fresh environment seeded from `--seed`"""
    n_actions: int = 11
    """A, torques evenly spaced over the action range, both ends included (11: -2.0, -1.6, ..., 2.0)"""
    num_envs: int = 4
    """E, environments stepped together; one network call picks the actions of all E"""
    torch_threads: int = 1
    """torch intra-op threads; small networks on 2 cores run fastest on one"""
    hidden_dim: int = 128
    """units in each of the two hidden layers of the Q-network"""
    learning_rate: float = 1e-3
    """Adam step size for the Q-network"""
    buffer_size: int = 20000
    """transitions the replay buffer holds; the oldest are overwritten"""
    gamma: float = 0.98
    """gamma, discount factor of the TD target"""
    tau: float = 1.0
    """target update rate: theta_target <- tau * theta + (1 - tau) * theta_target (1.0: hard copy)"""
    target_network_frequency: int = 30
    """gradient updates between two target-network updates"""
    batch_size: int = 128
    """B, transitions sampled from the buffer per gradient update"""
    start_e: float = 1.0
    """epsilon at the start of training"""
    end_e: float = 0.02
    """epsilon after the decay, for the rest of training"""
    exploration_fraction: float = 0.2
    """fraction of `--total-steps` over which epsilon decays linearly from start_e to end_e"""
    learning_starts: int = 1000
    """environment steps of epsilon-greedy acting before the first gradient update"""
    train_frequency: int = 1
    """environment steps (summed over envs) per gradient update; E/train_frequency updates per vector step"""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (smooth L1, as in the DQN paper's error clipping) or mean squared error"""
    log_frequency: int = 1000
    """environment steps between two logs of losses, max-Q and SPS"""


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One Pendulum whose action is an index into n_actions torques from low to high."""
    env = gym.make(args.env_id, render_mode=render_mode)
    if not isinstance(env.action_space, gym.spaces.Box) or env.action_space.shape != (1,):
        fail(f"--env-id {args.env_id!r} does not have a one-dimensional continuous action")
    low, high = float(env.action_space.low[0]), float(env.action_space.high[0])
    torques = np.linspace(low, high, args.n_actions, dtype=np.float32)  # [A]
    return gym.wrappers.TransformAction(
        env, lambda a: torques[a : a + 1], gym.spaces.Discrete(args.n_actions)
    )


def check_env_args(args: Args) -> None:
    """Checks that only this environment needs."""
    if args.n_actions < 2:
        fail(f"--n-actions must be >= 2 (both ends of the torque range), got {args.n_actions}")


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


# == SHARED: dqn_parts ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    try:
        gym.spec(args.env_id)
    except Exception:
        fail(f"unknown --env-id {args.env_id!r}: gymnasium has no such environment")
    at_least = {"total_steps": 0, "learning_starts": 0, "eval_episodes": 1, "num_envs": 1, "torch_threads": 1}
    at_least |= dict.fromkeys(["hidden_dim", "buffer_size", "batch_size", "log_frequency"], 1)
    at_least |= dict.fromkeys(["target_network_frequency", "train_frequency"], 1)
    for name, low in at_least.items():
        if getattr(args, name) < low:
            fail(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    for name in ("gamma", "start_e", "end_e", "exploration_fraction", "tau"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            fail(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if not (args.learning_rate > 0.0 and args.tau > 0.0):
        fail(f"--learning-rate and --tau must be > 0, got {args.learning_rate} and {args.tau}")
    check_env_args(args)


class QNetwork(nn.Module):
    """Q(s, .): an MLP from an observation to one value per discrete action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_actions),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)  # [B, O] -> [B, A]


class ReplayBuffer:
    """Preallocated ring buffer of transitions (s, a, r, s', terminated): numpy in, tensors out."""

    def __init__(self, size: int, obs_dim: int):
        self.obs = np.zeros((size, obs_dim), dtype=np.float32)  # [N, O]
        self.next_obs = np.zeros((size, obs_dim), dtype=np.float32)  # [N, O]
        self.actions = np.zeros(size, dtype=np.int64)  # [N]
        self.rewards = np.zeros(size, dtype=np.float32)  # [N]
        self.terminations = np.zeros(size, dtype=np.float32)  # [N] 1.0 only at a true terminal state
        self.size, self.pos, self.full = size, 0, False

    def add(self, obs, actions, rewards, next_obs, terminations) -> None:
        """Store the E transitions of one vector step (arrays with leading dimension E)."""
        idx = (self.pos + np.arange(len(actions))) % self.size  # [E]
        self.obs[idx], self.next_obs[idx], self.actions[idx] = obs, next_obs, actions
        self.rewards[idx], self.terminations[idx] = rewards, terminations
        self.full = self.full or self.pos + len(actions) >= self.size
        self.pos = (self.pos + len(actions)) % self.size

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> tuple:
        idx = rng.integers(self.size if self.full else self.pos, size=batch_size)  # [B]
        batch = (self.obs, self.actions, self.rewards, self.next_obs, self.terminations)
        return tuple(torch.from_numpy(x[idx]).to(device) for x in batch)  # [B, O], [B], [B], [B, O], [B]


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """Epsilon after t environment steps: linear from start_e to end_e over `duration` steps."""
    return max(end_e, start_e + (end_e - start_e) * t / max(duration, 1.0))


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta_target <- tau * theta + (1 - tau) * theta_target (tau = 1: hard copy)."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), online.parameters()):
            target_param.lerp_(param, tau)


# == ALGO: ddqn_pendulum ==
def td_target(q_network: nn.Module, target_network: nn.Module, rewards, next_obs, terminations, gamma: float):
    """Double DQN: y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q(s', a')), tensors [B].

    Only a true termination zeroes the bootstrap; a time-limit truncation keeps it.
    """
    with torch.no_grad():
        next_actions = q_network(next_obs).argmax(dim=1, keepdim=True)  # [B, O] -> [B, A] -> [B, 1]
        next_q = target_network(next_obs).gather(1, next_actions)[:, 0]  # [B, A] -> [B]
        return rewards + gamma * (1.0 - terminations) * next_q  # [B]


# == SHARED: dqn_main ==
def evaluate(q_network: nn.Module, args: Args, run_dir: str, device: torch.device) -> np.ndarray:
    """Greedy policy argmax_a Q(s, a) on a fresh environment seeded from args.seed; returns [episodes]."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(
            env, f"{run_dir}/videos", episode_trigger=lambda e: True, disable_logger=True
        )
    returns = np.zeros(args.eval_episodes)  # [episodes]
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + 10_000 + episode)
        done = False
        while not done:
            with torch.no_grad():
                q = q_network(torch.as_tensor(obs, device=device)[None])  # [1, O] -> [1, A]
            obs, reward, terminated, truncated, _ = env.step(int(q.argmax(dim=1)[0]))
            returns[episode] += float(reward)
            done = terminated or truncated
    env.close()
    return returns


def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(args) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,  # the final obs of an episode is in infos
    )
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        fail(f"--env-id {args.env_id!r} has no discrete action space")
    obs_dim, n_actions = int(np.prod(envs.single_observation_space.shape)), int(envs.single_action_space.n)
    q_network = QNetwork(obs_dim, n_actions, args.hidden_dim).to(device)
    if args.load_model:
        try:
            q_network.load_state_dict(torch.load(args.load_model, map_location=device, weights_only=True))
        except Exception as error:  # missing, not a state_dict, other shapes
            fail(f"cannot load --load-model {args.load_model!r}: {' '.join(str(error).split())}")
    target_network = QNetwork(obs_dim, n_actions, args.hidden_dim).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    rb = ReplayBuffer(args.buffer_size, obs_dim)
    loss_fn = F.smooth_l1_loss if args.loss == "huber" else F.mse_loss
    rng = np.random.default_rng(args.seed)
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, global_step = False, time.time(), 0
    num_updates, next_log, recent_returns = 0, args.log_frequency, []
    obs, _ = envs.reset(seed=args.seed)  # [E, O]
    envs.action_space.seed(args.seed)
    try:
        while global_step + args.num_envs <= args.total_steps:
            epsilon = linear_schedule(
                args.start_e, args.end_e, args.exploration_fraction * args.total_steps, global_step
            )
            explore = rng.random(args.num_envs) < epsilon  # [E]
            actions = rng.integers(n_actions, size=args.num_envs)  # [E]
            if not explore.all():
                with torch.no_grad():
                    q = q_network(torch.as_tensor(obs, device=device))  # [E, O] -> [E, A]
                actions = np.where(explore, actions, q.argmax(dim=1).cpu().numpy())  # [E]
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs
            real_next_obs = next_obs.copy()  # [E, O]
            if "_final_obs" in infos:  # SAME_STEP autoreset: next_obs is already the next episode's start
                for i in np.flatnonzero(infos["_final_obs"]):
                    real_next_obs[i] = infos["final_obs"][i]
                for i in np.flatnonzero(infos["_episode"]):
                    recent_returns = [*recent_returns[-9:], float(infos["episode"]["r"][i])]
                    writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                    writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
            rb.add(obs, actions, rewards, real_next_obs, terminations)  # truncation is not termination
            obs = next_obs

            while num_updates < (global_step - args.learning_starts) // args.train_frequency:
                obs_b, actions_b, rewards_b, next_obs_b, terms_b = rb.sample(args.batch_size, rng, device)
                target = td_target(
                    q_network, target_network, rewards_b, next_obs_b, terms_b, args.gamma
                )  # [B]
                q_all = q_network(obs_b)  # [B, O] -> [B, A]
                q_taken = q_all.gather(1, actions_b[:, None])[:, 0]  # [B, A] -> [B]
                loss = loss_fn(q_taken, target)
                if not torch.isfinite(loss):
                    fail(f"loss is {loss.item()} at step {global_step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                num_updates += 1
                if num_updates % args.target_network_frequency == 0:
                    soft_update(target_network, q_network, args.tau)

            if global_step >= next_log:
                next_log += args.log_frequency
                sps = global_step / (time.time() - start_time)
                writer.add_scalar("charts/SPS", sps, global_step)
                writer.add_scalar("charts/epsilon", epsilon, global_step)
                if num_updates > 0:
                    writer.add_scalar("losses/td_loss", loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_taken.mean().item(), global_step)
                    writer.add_scalar("charts/max_q", q_all.max(dim=1).values.mean().item(), global_step)
                progress.set_postfix(ret=f"{np.mean(recent_returns or [0]):.1f}", sps=f"{sps:.0f}")
            progress.update(args.num_envs)
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    envs.close()
    train_seconds = time.time() - start_time
    returns = evaluate(q_network, args, run_dir, device)
    if args.save_model:
        torch.save(q_network.state_dict(), os.path.join(run_dir, "model.pt"))
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
        "train_return_last10": float(np.mean(recent_returns or [0])),
    }
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
