"""Value iteration on FrozenLake-v1, planned through the environment's own model P.

Policy iteration with its evaluation cut to a single sweep: every sweep applies the Bellman
optimality backup V(s) <- max_a [r(s, a) + gamma sum_s' p(s'|s, a) V(s')] until no value moves by theta.
Reference: Sutton & Barto (2nd ed.), section 4.4.
Run:  python algos/frozenlake_value_iteration.py --map-name 8x8
Docs: docs/algorithms/frozenlake_value_iteration.md   Parent: frozenlake_policy_iteration.py (sibling:
cliff_value_iteration.py)
Shapes: S states (4 x 4 or 8 x 8 cells), A = 4 actions, S' next states; V [S], Q [S, A], P [S, A, S'].
"""

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
    # == ENV: frozen_lake_args ==
    env_id: str = "FrozenLake-v1"
    """gymnasium id; only FrozenLake-v1 (reward 1 on reaching the goal G, 0 otherwise; holes H end the episode)"""
    map_name: str = "4x4"
    """the built-in lake, `4x4` or `8x8`"""
    is_slippery: bool = True
    """the move goes the intended way or to either side, 1/3 each (FrozenLake-v1's own option); P models it too"""
    max_episode_steps: int = 100
    """TimeLimit of the evaluation episodes, in env steps (FrozenLake-v1 registers 100, also for `8x8`)"""
    eval_episodes: int = 1000
    """greedy episodes in the real environment after planning; `success_rate` is the fraction reaching G"""
    # == SHARED: dp_args ==
    gamma: float = 0.99
    """gamma, discount per env step in [0, 1]; 1 / (1 - gamma) is roughly the horizon, in steps, the plan cares about"""
    theta: float = 1e-12
    """theta > 0: a sweep whose largest value change |V_new(s) - V(s)| is below theta ends an evaluation (VI: the plan)"""
    max_iterations: int = 100_000
    """most outer iterations (policy iteration: improvements, value iteration: sweeps); 0 only evaluates the policy"""
    tie_tolerance: float = 1e-8
    """actions whose Q(s, a) lie within this of the best are tied; ties go to the lowest action index"""
    # == ALGO: value_iteration ==
    # (no fields of its own: a sweep of the optimality backup needs only gamma, theta and max_iterations)


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


# == ENV: frozen_lake ==
ARROWS = "←↓→↑"  # FrozenLake actions: 0 left, 1 down, 2 right, 3 up


def check_env_args(args: Args) -> None:
    if args.env_id != "FrozenLake-v1":
        fail(f"unknown --env-id {args.env_id!r}: this file plans on FrozenLake-v1 only")
    if args.map_name not in ("4x4", "8x8"):
        fail(f"--map-name must be 4x4 or 8x8, got {args.map_name!r}")


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    # max_episode_steps replaces the registered TimeLimit (100 steps, on the 8x8 map as well)
    return gym.make(
        args.env_id,
        map_name=args.map_name,
        is_slippery=args.is_slippery,
        max_episode_steps=args.max_episode_steps,
        render_mode=render_mode,
    )


def grid_labels(env: gym.Env) -> np.ndarray:
    """[rows, cols] letters drawn instead of arrows: H hole, G goal."""
    desc = env.unwrapped.desc.astype(str).astype(object)  # [rows, cols] of S, F, H, G
    return np.where((desc == "H") | (desc == "G"), desc, "")


# == SHARED: dp_core ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    if args.max_iterations < 0:
        fail(f"--max-iterations must be >= 0, got {args.max_iterations}")
    if not 0.0 <= args.gamma <= 1.0:
        fail(f"--gamma must be in [0, 1], got {args.gamma}")
    if not args.theta > 0.0:
        fail(f"--theta must be > 0, got {args.theta}")
    if not args.tie_tolerance >= 0.0:
        fail(f"--tie-tolerance must be >= 0, got {args.tie_tolerance}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1, got {args.eval_episodes}")
    if args.max_episode_steps < 1:
        fail(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    check_env_args(args)
    check_algo_args(args)


def load_model(path: str, num_states: int, num_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a saved value table V [S] and policy [S] from an `.npz` file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            values, policy = data["V"].astype(np.float64), data["policy"]
    except Exception as error:  # missing, not an npz, missing keys
        fail(f"cannot load --load-model {path!r}: {error}")
    if values.shape != (num_states,) or policy.shape != (num_states,) or policy.dtype.kind not in "iu":
        fail(f"--load-model {path!r} does not hold V and integer policy for the {num_states} states here")
    if not (np.isfinite(values).all() and 0 <= policy.min() and policy.max() < num_actions):
        fail(f"--load-model {path!r} holds non-finite values or actions outside 0..{num_actions - 1}")
    return values, policy.astype(np.int64)


def transition_tables(env: gym.Env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The environment's own model, `env.unwrapped.P[s][a] = [(p, s', r, terminated), ...]`, as arrays."""
    num_states, num_actions = env.observation_space.n, env.action_space.n
    P = np.zeros((num_states, num_actions, num_states))  # [S, A, S'] p(s' | s, a)
    R = np.zeros((num_states, num_actions))  # [S, A] r(s, a) = sum_s' p(s' | s, a) r(s, a, s')
    terminal = np.zeros(num_states, dtype=bool)  # [S] states entered with terminated=True: V = 0 there
    for s, actions in env.unwrapped.P.items():
        for a, outcomes in actions.items():
            for p, next_s, r, terminated in outcomes:
                P[s, a, next_s] += p  # +=: a slip into a wall lists the same s' twice
                R[s, a] += p * r
                terminal[next_s] |= terminated
    return P, R, terminal


def action_values(
    P: np.ndarray, R: np.ndarray, terminal: np.ndarray, V: np.ndarray, gamma: float
) -> np.ndarray:
    """Q(s, a) = r(s, a) + gamma * sum_s' p(s' | s, a) V(s'), with V = 0 beyond a termination."""
    return R + gamma * P @ np.where(terminal, 0.0, V)  # [S, A] + [S, A, S'] @ [S'] -> [S, A]


def greedy_policy(Q: np.ndarray, tie_tolerance: float) -> np.ndarray:
    """argmax_a Q(s, a); near-ties go to the lowest action, so equal plans pick equal actions."""
    best = Q >= Q.max(axis=1, keepdims=True) - tie_tolerance  # [S, A] within tolerance of the best
    return best.argmax(axis=1)  # [S, A] -> [S] first True


# == ALGO: value_iteration ==
def check_algo_args(args: Args) -> None:
    """Value iteration has no fields of its own to check."""


def bellman_optimality_backup(
    P: np.ndarray, R: np.ndarray, terminal: np.ndarray, V: np.ndarray, gamma: float, tie_tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """V(s) <- max_a [r(s, a) + gamma sum_s' p(s'|s, a) V(s')] (S&B eq. 4.10), and the greedy policy."""
    Q = action_values(P, R, terminal, V, gamma)  # [S, A]
    return np.where(terminal, 0.0, Q.max(axis=1)), greedy_policy(Q, tie_tolerance)  # [S], [S]


def dp_iteration(
    P: np.ndarray, R: np.ndarray, terminal: np.ndarray, V: np.ndarray, policy: np.ndarray, args: Args
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """One value-iteration sweep; converged once no value moves by theta (policy: greedy in the old V)."""
    V_new, policy = bellman_optimality_backup(P, R, terminal, V, args.gamma, args.tie_tolerance)
    return V_new, policy, 1, bool(np.abs(V_new - V).max() < args.theta)


# == SHARED: dp_main ==
def print_grid(V: np.ndarray, policy: np.ndarray, labels: np.ndarray) -> None:
    """Print the value grid and the greedy policy as arrows (letters mark goal, holes, cliff)."""
    print("V(s):")
    for row in V.reshape(labels.shape):  # [S] -> [rows, cols]
        print(" ".join(f"{v:8.3f}" for v in row))
    print("greedy policy:")
    for actions, marks in zip(policy.reshape(labels.shape), labels):
        print(" ".join(mark or ARROWS[a] for a, mark in zip(actions, marks)))


def evaluate(
    policy: np.ndarray, env: gym.Env, goal_states: np.ndarray, eval_episodes: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the policy in the real environment; returns the episodes' returns, lengths, goal reached [N]."""
    returns, lengths, successes = np.zeros(eval_episodes), np.zeros(eval_episodes), np.zeros(eval_episodes)
    for episode in range(eval_episodes):
        state, _ = env.reset(seed=seed if episode == 0 else None)  # one seed, then the env's own stream
        terminated = truncated = False
        while not (terminated or truncated):
            state, _, terminated, truncated, info = env.step(int(policy[state]))
        returns[episode], lengths[episode] = info["episode"]["r"], info["episode"]["l"]
        successes[episode] = terminated and state in goal_states
    return returns, lengths, successes


def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    env = make_env(args)
    P, R, terminal = transition_tables(env)  # [S, A, S'], [S, A], [S]
    num_states, num_actions = R.shape
    start = env.unwrapped.initial_state_distrib  # [S] distribution of the first state
    V = np.zeros(num_states)  # [S] value estimate
    policy = np.zeros(num_states, dtype=np.int64)  # [S] pi(s), action 0 everywhere at first
    if args.load_model:
        V, policy = load_model(args.load_model, num_states, num_actions)
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.max_iterations, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, iterations, sweeps = False, time.time(), 0, 0
    try:
        while iterations < args.max_iterations:
            V_new, new_policy, new_sweeps, converged = dp_iteration(P, R, terminal, V, policy, args)
            delta, changed = np.abs(V_new - V).max(), int((new_policy != policy).sum())
            V, policy, iterations, sweeps = V_new, new_policy, iterations + 1, sweeps + new_sweeps
            progress.update(1)
            if converged or iterations == args.max_iterations or iterations & (iterations - 1) == 0:
                # at iterations 1, 2, 4, 8, ... and the last: value iteration may sweep thousands of times
                writer.add_scalar("losses/value_change", delta, iterations)
                writer.add_scalar("charts/policy_changes", changed, iterations)
                writer.add_scalar("charts/start_state_value", start @ V, iterations)
                progress.set_postfix(delta=f"{delta:.2e}")
            if converged:
                break
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    train_seconds = time.time() - start_time
    writer.add_scalar("charts/SPS", sweeps * num_states / max(train_seconds, 1e-9), iterations)
    labels = grid_labels(env)  # [rows, cols]
    print_grid(V, policy, labels)
    eval_env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        eval_env = gym.wrappers.RecordVideo(
            eval_env, f"{run_dir}/videos", episode_trigger=lambda e: True, disable_logger=True
        )
    eval_env = gym.wrappers.RecordEpisodeStatistics(eval_env)
    goal_states = np.flatnonzero(labels.ravel() == "G")
    returns, lengths, successes = evaluate(policy, eval_env, goal_states, args.eval_episodes, args.seed)
    eval_env.close()
    for episode, (episode_return, length) in enumerate(zip(returns, lengths)):
        writer.add_scalar("eval/episodic_return", episode_return, episode)
        writer.add_scalar("eval/episodic_length", length, episode)
    if args.save_model:
        np.savez(os.path.join(run_dir, "model.npz"), V=V, policy=policy)
    summary = {
        "algo": os.path.basename(__file__)[: -len(".py")],
        "env_id": args.env_id,
        "seed": args.seed,
        "total_steps": sweeps * num_states,
        "num_updates": sweeps,
        "train_seconds": round(train_seconds, 3),
        "steps_per_second": round(sweeps * num_states / max(train_seconds, 1e-9), 1),
        "eval_episodes": args.eval_episodes,
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "interrupted": interrupted,
        "run_dir": run_dir,
        "iterations": iterations,
        "start_state_value": float(start @ V),
        "success_rate": float(successes.mean()),
        "eval_length_mean": float(lengths.mean()),
    }
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
