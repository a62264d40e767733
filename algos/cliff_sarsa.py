"""SARSA on CliffWalking: on-policy TD control.

Q(s, a) moves towards r + gamma * Q(s', a'), where a' is the action the epsilon-greedy
behaviour policy actually takes next: SARSA learns the value of the policy it follows, risk of
a random step into the cliff included, so its greedy path keeps away from the edge.
The root of the tabular TD family. Reference: Sutton & Barto (2nd ed.), section 6.4.
Run:  python algos/cliff_sarsa.py --total-steps 50000
Docs: docs/algorithms/cliff_sarsa.md   Parent: none (siblings: cliff_q_learning.py, dyna_q.py)
Shapes: S states (4 x 12 grid cells), A = 4 actions (up, right, down, left).
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
    # == ENV: cliff_walking_args ==
    env_id: str = "CliffWalking-v1"
    """gymnasium id; a CliffWalking variant (discrete states, deterministic moves, a fall costs -100 and returns to the start)"""
    max_episode_steps: int = 200
    """TimeLimit in env steps per episode, training and evaluation; a truncated step still bootstraps (only the goal terminates), and a greedy policy that loops scores -max_episode_steps in evaluation"""
    total_steps: int = 50000
    """real environment steps of training (Dyna-Q's planning updates are not counted here)"""
    eval_episodes: int = 5
    """greedy episodes of the final evaluation (the environment is deterministic, so they are all alike)"""
    target_return: float = -13.0
    """the summary's `steps_to_target` counts env steps until the greedy path first returns at least this (-13: the optimal path)"""
    # == SHARED: td_args ==
    alpha: float = 0.1
    """alpha, constant step size of every update Q(s, a) += alpha * (target - Q(s, a)), in (0, 1]; the book's 0.5 can leave SARSA's greedy policy looping at the end of a run, 0.1 keeps it stable"""
    gamma: float = 1.0
    """gamma, discount per env step; 1 (undiscounted) as in Sutton & Barto's cliff example"""
    epsilon: float = 0.1
    """epsilon, probability that the behaviour policy takes a uniformly random action, fixed for the whole run; SARSA's path keeps further from the cliff the larger it is, Q-learning's greedy path ignores it"""
    # == ALGO: algo_args ==


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


# == SHARED: td_setup ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    if args.total_steps < 0:
        fail(f"--total-steps must be >= 0, got {args.total_steps}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1, got {args.eval_episodes}")
    if args.max_episode_steps < 1:
        fail(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    if not 0.0 < args.alpha <= 1.0:
        fail(f"--alpha must be in (0, 1], got {args.alpha}")
    for name in ("gamma", "epsilon"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            fail(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    try:
        gym.spec(args.env_id)
    except gym.error.Error:
        fail(f"unknown --env-id {args.env_id!r}")
    if not args.env_id.startswith("CliffWalking"):
        fail(f"--env-id {args.env_id!r}: this file needs a CliffWalking grid")
    check_algo_args(args)


def make_env(env_id: str, max_episode_steps: int, render_mode: Optional[str] = None) -> gym.Env:
    env = gym.make(env_id, render_mode=render_mode)
    env = gym.wrappers.TimeLimit(env, max_episode_steps)  # CliffWalking-v1 has no limit of its own
    return gym.wrappers.RecordEpisodeStatistics(env)


def load_q(path: str, shape: tuple[int, int]) -> np.ndarray:
    """Read a saved table Q [S, A] from an `.npz` file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            q = data["q"]
    except Exception as error:  # missing, not an npz, no key "q"
        fail(f"cannot load --load-model {path!r}: {str(error).splitlines()[0]}")
    if q.shape != shape or not np.isfinite(q).all():
        fail(f"--load-model {path!r} holds shape {q.shape} (or non-finite values), expected {shape}")
    return q.astype(np.float64)


def epsilon_greedy(q: np.ndarray, obs: int, epsilon: float, rng: np.random.Generator) -> int:
    """Behaviour policy: a uniformly random action with probability epsilon, else argmax_a Q[s, a]."""
    if rng.random() < epsilon:
        return int(rng.integers(q.shape[1]))
    return int(q[obs].argmax())  # [S, A] -> [A] -> (); ties go to the lowest action index


def td_target(reward: float, next_value: float, termination: bool, gamma: float) -> float:
    """r + gamma * next_value; only a true termination zeroes the bootstrap, a TimeLimit truncation keeps it."""
    return reward + gamma * next_value * (1.0 - float(termination))


# == ALGO: cliff_sarsa ==
def check_algo_args(args: Args) -> None:
    pass  # SARSA has no fields beyond the family's


def bootstrap_value(q: np.ndarray, next_obs: int, next_action: int) -> float:
    """SARSA: the value of the action the behaviour policy takes next, Q[s', a'] (on-policy)."""
    return float(q[next_obs, next_action])


# == SHARED: td_report ==
def greedy_path(q: np.ndarray, table: dict, start: int) -> tuple[list[int], float, bool]:
    """Follow argmax_a Q from `start` through the env's own transition table P (a measurement the agent
    never learns from): visited states, return, goal reached. Stops at a revisit, i.e. a loop or a fall."""
    path, path_return, obs = [start], 0.0, start
    while True:
        _, obs, reward, terminated = table[obs][int(q[obs].argmax())][0]  # deterministic: one outcome
        path_return += reward
        if terminated or obs in path:
            return path + [obs] * terminated, path_return, bool(terminated)
        path.append(obs)


def policy_grid(q: np.ndarray, table: dict, shape: tuple[int, int], path: list[int]) -> str:
    """The greedy action of every cell as an arrow, [bracketed] on the greedy path; C cliff, G goal."""
    reachable = {t[1] for moves in table.values() for outcomes in moves.values() for t in outcomes}
    goals = {t[1] for moves in table.values() for outcomes in moves.values() for t in outcomes if t[3]}
    cells = []
    for s, action in enumerate(q.argmax(axis=1)):  # [S, A] -> [S]
        mark = "G" if s in goals else "C" if s not in reachable else "↑→↓←"[action]
        cells.append(f"[{mark}]" if s in path and s not in goals else f" {mark} ")
    return "\n".join("".join(cells[r * shape[1] : (r + 1) * shape[1]]) for r in range(shape[0]))


def evaluate(q: np.ndarray, env: gym.Env, eval_episodes: int, seed: int) -> np.ndarray:
    """Greedy episodes of argmax_a Q on `env`; returns the episode returns [eval_episodes]."""
    returns = np.zeros(eval_episodes)
    for episode in range(eval_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(q[obs].argmax()))
            returns[episode] += reward
            done = terminated or truncated
    env.close()
    return returns


# == SHARED: td_main ==
def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    rng = np.random.default_rng(args.seed)  # the behaviour policy's coin flips and random actions
    env = make_env(args.env_id, args.max_episode_steps)
    table = env.unwrapped.P  # P[s][a] = [(prob, s', r, terminated)], used only by greedy_path
    q = np.zeros((env.observation_space.n, env.action_space.n))  # [S, A] action values Q
    if args.load_model:
        q = load_q(args.load_model, q.shape)
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, global_step = False, time.time(), 0
    episodes, num_updates, steps_to_target, abs_td_error = 0, 0, None, 0.0
    obs, _ = env.reset(seed=args.seed)
    start = obs
    action = epsilon_greedy(q, obs, args.epsilon, rng)
    try:
        while global_step < args.total_steps:
            next_obs, reward, terminated, truncated, info = env.step(action)
            global_step += 1
            # a' is drawn before the update, as SARSA needs it; the siblings keep this order so that
            # their diff shows only the target (for Q-learning it matters only when s' == s)
            next_action = epsilon_greedy(q, next_obs, args.epsilon, rng)
            target = td_target(reward, bootstrap_value(q, next_obs, next_action), terminated, args.gamma)
            td_error = target - q[obs, action]
            q[obs, action] += args.alpha * td_error  # Q(s, a) += alpha * (target - Q(s, a))
            num_updates += 1
            abs_td_error += abs(td_error)
            if terminated or truncated:
                episodes += 1
                writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
                writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)
                writer.add_scalar("losses/abs_td_error", abs_td_error / info["episode"]["l"], global_step)
                abs_td_error = 0.0
                path, path_return, reached = greedy_path(q, table, start)
                if reached:
                    writer.add_scalar("charts/greedy_return", path_return, global_step)
                if reached and path_return >= args.target_return and steps_to_target is None:
                    steps_to_target = global_step
                if episodes % 20 == 0:
                    sps = global_step / max(time.time() - start_time, 1e-9)
                    writer.add_scalar("charts/SPS", sps, global_step)
                    progress.update(global_step - progress.n)
                    progress.set_postfix(episodic_return=info["episode"]["r"], sps=f"{sps:.0f}")
                next_obs, _ = env.reset()
                next_action = epsilon_greedy(q, next_obs, args.epsilon, rng)
            obs, action = next_obs, next_action
    except KeyboardInterrupt:
        interrupted = True
    progress.update(global_step - progress.n)
    progress.close()
    train_seconds = time.time() - start_time
    eval_env = make_env(args.env_id, args.max_episode_steps, "rgb_array" if args.capture_video else None)
    if args.capture_video:
        eval_env = gym.wrappers.RecordVideo(
            eval_env, f"{run_dir}/videos", episode_trigger=lambda e: True, disable_logger=True
        )
    returns = evaluate(q, eval_env, args.eval_episodes, args.seed)
    if args.save_model:
        np.savez(os.path.join(run_dir, "model.npz"), q=q)
    path, path_return, reached = greedy_path(q, table, start)
    print(policy_grid(q, table, env.unwrapped.shape, path))
    print(
        f"greedy path: {len(path) - 1} steps, return {path_return:g}" if reached else "greedy path: no goal"
    )
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
        "episodes": episodes,
        "path_length": len(path) - 1 if reached else None,
        "steps_to_target": steps_to_target,
    }
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
