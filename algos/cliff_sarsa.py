"""SARSA on CliffWalking: on-policy TD control.

Q(s, a) moves towards r + gamma * Q(s', a'), where a' is the action the epsilon-greedy
behaviour policy actually takes next: SARSA learns the value of the policy it follows, risk of
a random step into the cliff included, so its greedy path keeps away from the edge.
Reference: Sutton & Barto (2nd ed.), section 6.4.
Run:  python algos/cliff_sarsa.py
Docs: docs/algorithms/cliff_sarsa.md   Parent: none (root of the tabular TD family; child: cliff_q_learning.py)
Shapes: S states (4 x 12 grid cells), A = 4 actions (up, right, down, left).
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
from typing import Callable, NoReturn, Optional

import gymnasium as gym
import numpy as np
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
    # == ENV: cliff_walking_args ==
    env_id: str = "CliffWalking-v1"
    """gymnasium id; a CliffWalking variant (discrete states, deterministic moves, a fall costs -100 and returns to the start)"""
    max_episode_steps: int = 200
    """TimeLimit in env steps per episode, training and evaluation; a truncated step still bootstraps (only the goal terminates), and a greedy policy that loops scores -max_episode_steps in evaluation"""
    total_steps: int = 30000
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
    # (no fields beyond the family's; Dyna-Q adds planning_steps here)


# == SHARED: td_parts ==
def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """CliffWalking has no time limit of its own: TimeLimit ends an episode that loops."""
    env = gym.make(args.env_id, max_episode_steps=args.max_episode_steps, render_mode=render_mode)
    return gym.wrappers.RecordEpisodeStatistics(env)


def epsilon_greedy(q: np.ndarray, obs: int, epsilon: float, rng: np.random.Generator) -> int:
    """Behaviour policy: a uniformly random action with probability epsilon, else argmax_a Q[s, a]."""
    if rng.random() < epsilon:
        return int(rng.integers(q.shape[1]))
    return int(q[obs].argmax())  # [S, A] -> [A] -> (); ties go to the lowest action index


def td_target(reward: float, next_value: float, termination: bool, gamma: float) -> float:
    """r + gamma * next_value; only a true termination zeroes the bootstrap, a TimeLimit truncation keeps it."""
    return reward + gamma * next_value * (1.0 - float(termination))


# == ALGO: cliff_sarsa ==
def bootstrap_value(q: np.ndarray, next_obs: int, next_action: int) -> float:
    """SARSA: the value of the action the behaviour policy takes next, Q[s', a'] (on-policy)."""
    return float(q[next_obs, next_action])


def plan(q: np.ndarray, model: np.ndarray, step: tuple, args: Args, rng: np.random.Generator) -> int:
    """No model and no planning: SARSA learns from the real steps alone (Dyna-Q plans here)."""
    return 0  # planning updates made


# == SHARED: td_main ==
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


def evaluate(q: np.ndarray, args: Args, run_dir: str, stop) -> list[float]:
    """Greedy episodes of argmax_a Q on start states of the evaluation's own; returns the finished ones."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    seeds, returns = np.random.default_rng([args.seed, 1]), []  # no training reset starts from these
    for _ in range(args.eval_episodes):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        episode_return, done = 0.0, False
        while not done and not stop.is_set():
            obs, reward, terminated, truncated, _ = env.step(int(q[obs].argmax()))
            episode_return, done = episode_return + float(reward), terminated or truncated
        if not done:  # stopped mid-episode: only finished episodes count
            break
        returns.append(episode_return)
    env.close()
    return returns


def main(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    table = env.unwrapped.P  # P[s][a] = [(prob, s', r, terminated)], used only by greedy_path
    q = np.zeros((env.observation_space.n, env.action_space.n))  # [S, A] action values Q
    if args.load_model:
        q = load_npz(args.load_model, q=q.shape)["q"].astype(np.float64)
    model = np.full((*q.shape, 3), np.nan)  # [S, A, 3] Dyna-Q's model, (r, s', terminated); NaN: never seen
    rng = np.random.default_rng(args.seed)  # the behaviour policy's coin flips and random actions
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    start_time, global_step, episodes, num_updates, steps_to_target = time.time(), 0, 0, 0, None
    abs_td_error, last_log = 0.0, 0
    obs, _ = env.reset(seed=args.seed)
    start, action = obs, epsilon_greedy(q, obs, args.epsilon, rng)
    while global_step < args.total_steps and not stop.is_set():
        next_obs, reward, terminated, truncated, info = env.step(action)
        global_step += 1
        # a' is drawn before the update, as SARSA needs it; the siblings keep this order so that their
        # diff shows only the target (for Q-learning it matters only when s' == s; for Dyna-Q see its docs)
        next_action = epsilon_greedy(q, next_obs, args.epsilon, rng)
        target = td_target(reward, bootstrap_value(q, next_obs, next_action), terminated, args.gamma)
        td_error = target - q[obs, action]
        q[obs, action] += args.alpha * td_error  # Q(s, a) += alpha * (target - Q(s, a))
        num_updates += 1 + plan(q, model, (obs, action, reward, next_obs, terminated), args, rng)
        abs_td_error += abs(td_error)
        if terminated or truncated:
            episodes += 1
            writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
            if steps_to_target is None or episodes % 20 == 0:
                path, path_return, reached = greedy_path(q, table, start)
                if reached and path_return >= args.target_return and steps_to_target is None:
                    steps_to_target = global_step
            if episodes % 20 == 0:  # a TensorBoard scalar costs ~16 us: the rest every 20 episodes
                sps = global_step / max(time.time() - start_time, 1e-9)
                writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)
                writer.add_scalar("losses/abs_td_error", abs_td_error / (global_step - last_log), global_step)
                if reached:
                    writer.add_scalar("charts/greedy_return", path_return, global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                progress.update(global_step - progress.n)
                progress.set_postfix(episodic_return=info["episode"]["r"], sps=f"{sps:.0f}")
                abs_td_error, last_log = 0.0, global_step
            next_obs, _ = env.reset()
            next_action = epsilon_greedy(q, next_obs, args.epsilon, rng)
        obs, action = next_obs, next_action
    progress.update(global_step - progress.n)
    progress.close()
    train_seconds, interrupted = time.time() - start_time, stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    returns = evaluate(q, args, run_dir, stop)
    if args.save_model:
        write_atomic(f"{run_dir}/model.npz", lambda f: np.savez(f, q=q))
    path, path_return, reached = greedy_path(q, table, start)
    print(
        f"greedy path: {len(path) - 1} steps, return {path_return:g}" if reached else "greedy path: no goal"
    )
    return finish_run(
        args, run_dir, writer, returns, total_steps=global_step, num_updates=num_updates,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(), episodes=episodes,
        path_length=len(path) - 1 if reached else None, steps_to_target=steps_to_target,
    )  # fmt: skip


# == SHARED: td_checks ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    at_least = {"total_steps": 0, "eval_episodes": 1, "max_episode_steps": 1, "planning_steps": 0}
    check_common_args(
        args, {k: v for k, v in at_least.items() if hasattr(args, k)}, ("alpha", "gamma", "epsilon")
    )
    if not args.alpha > 0.0:
        fail(f"--alpha must be in (0, 1], got {args.alpha}")
    check_memory(8 * getattr(args, "planning_steps", 0), "--planning-steps")  # Dyna-Q's draws per real step
    check_env(args.env_id, args.capture_video)
    if not args.env_id.startswith("CliffWalking"):
        fail(f"--env-id {args.env_id!r}: this file needs a CliffWalking grid")


# == SHARED: table_loader ==
def load_npz(path: str, **shapes: tuple) -> dict:
    """Read `--load-model`: the arrays named in `shapes`, of those shapes, finite numbers; else one line."""
    try:
        with np.load(path, allow_pickle=False) as data:  # an object array would need pickle: refused
            arrays = {name: data[name] for name in shapes}
    except Exception as error:  # missing, not an npz, a key missing
        fail(f"cannot load --load-model {path!r}: {type(error).__name__}: {error}")
    for name, array in arrays.items():
        if array.shape != shapes[name] or array.dtype.kind not in "iuf" or not np.isfinite(array).all():
            fail(f"--load-model {path!r}: {name} is {array.dtype} {array.shape}, want finite {shapes[name]}")
    return arrays


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
