"""Value iteration on FrozenLake-v1, planned through the environment's own model P.

Policy iteration with its evaluation cut to a single sweep: every sweep applies the Bellman
optimality backup V(s) <- max_a [r(s, a) + gamma sum_s' p(s'|s, a) V(s')] until no value moves by theta.
Reference: Sutton & Barto (2nd ed.), section 4.4.
Run:  python algos/frozenlake_value_iteration.py --map-name 8x8
Docs: docs/algorithms/frozenlake_value_iteration.md   Parent: cliff_value_iteration.py (the same plan on
CliffWalking; policy iteration on this lake: frozenlake_policy_iteration.py)
Shapes: S states (4 x 4 or 8 x 8 cells), A = 4 actions, S' next states; V [S], Q [S, A], P [S, A, S'].
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
    # == ALGO: algo_args ==
    # (no fields of its own: a sweep of the optimality backup needs only gamma, theta and max_iterations)


# == ENV: frozen_lake ==
ARROWS = "←↓→↑"  # FrozenLake actions: 0 left, 1 down, 2 right, 3 up


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


def check_env_args(args: Args) -> None:
    if args.env_id != "FrozenLake-v1":
        fail(f"unknown --env-id {args.env_id!r}: this file plans on FrozenLake-v1 only")
    if args.map_name not in ("4x4", "8x8"):
        fail(f"--map-name must be 4x4 or 8x8, got {args.map_name!r}")


# == SHARED: dp_core ==
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
def evaluate(policy: np.ndarray, args: Args, run_dir: str, goal_states: np.ndarray, stop) -> list[list]:
    """The policy in the real environment, on start states of the evaluation's own; for the episodes that
    finished: [returns, lengths, goal reached (0 or 1)]."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    seeds, episodes = np.random.default_rng([args.seed, 1]), [[], [], []]  # no other --seed starts from these
    for _ in range(args.eval_episodes):
        state, _ = env.reset(seed=int(seeds.integers(2**31)))
        episode_return, length, done = 0.0, 0, False
        while not done and not stop.is_set():
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            episode_return, length, done = episode_return + float(reward), length + 1, terminated or truncated
        if not done:  # stopped mid-episode: only finished episodes count
            break
        for values, value in zip(
            episodes, (episode_return, length, float(terminated and state in goal_states))
        ):
            values.append(value)
    env.close()
    return episodes


def main(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    P, R, terminal = transition_tables(env)  # [S, A, S'], [S, A], [S]
    start = env.unwrapped.initial_state_distrib  # [S] distribution of the first state
    V, policy = (
        np.zeros(len(terminal)),
        np.zeros(len(terminal), dtype=np.int64),
    )  # [S] V(s); pi(s) = 0 at first
    if args.load_model:
        V, policy = load_npz(args.load_model, V=V.shape, policy=policy.shape).values()
        if policy.dtype.kind not in "iu" or not 0 <= policy.min() <= policy.max() < R.shape[1]:
            fail(f"--load-model {args.load_model!r}: policy must hold actions 0..{R.shape[1] - 1}")
        V, policy = V.astype(np.float64), policy.astype(np.int64)
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.max_iterations, disable=not (args.progress and sys.stderr.isatty()))
    start_time, iterations, sweeps = time.time(), 0, 0
    while iterations < args.max_iterations and not stop.is_set():
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
    progress.close()
    train_seconds, interrupted = time.time() - start_time, stop.is_set()
    writer.add_scalar("charts/SPS", sweeps * len(V) / max(train_seconds, 1e-9), iterations)
    labels = grid_labels(env)  # [rows, cols]
    for row, actions, marks in zip(V.reshape(labels.shape), policy.reshape(labels.shape), labels):
        print(
            " ".join(f"{v:8.3f}" for v in row), "  ", " ".join(m or ARROWS[a] for a, m in zip(actions, marks))
        )
    stop.clear()  # from here a stop ends the evaluation
    returns, lengths, successes = evaluate(policy, args, run_dir, np.flatnonzero(labels.ravel() == "G"), stop)
    for episode, (episode_return, length) in enumerate(zip(returns, lengths)):
        writer.add_scalar("eval/episodic_return", episode_return, episode)
        writer.add_scalar("eval/episodic_length", length, episode)
    if args.save_model:
        write_atomic(f"{run_dir}/model.npz", lambda f: np.savez(f, V=V, policy=policy))
    return finish_run(
        args, run_dir, writer, returns, total_steps=sweeps * len(V), num_updates=sweeps,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
        iterations=iterations, start_state_value=float(start @ V),
        success_rate=float(np.mean(successes)) if successes else None,
        eval_length_mean=float(np.mean(lengths)) if lengths else None,
    )  # fmt: skip


# == SHARED: dp_checks ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    at_least = {"max_iterations": 0, "eval_episodes": 1, "max_episode_steps": 1, "max_evaluation_sweeps": 1}
    check_common_args(args, {k: v for k, v in at_least.items() if hasattr(args, k)}, ("gamma",))
    if not (args.theta > 0.0 and args.tie_tolerance >= 0.0):
        fail(f"--theta must be > 0 and --tie-tolerance >= 0, got {args.theta} and {args.tie_tolerance}")
    check_env(args.env_id, args.capture_video)
    check_env_args(args)


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
