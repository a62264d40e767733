"""Epsilon-greedy on a K-armed Bernoulli bandit.

With probability epsilon pull a uniformly random arm, otherwise the arm with the highest estimated
mean reward, ties broken at random; the estimates are incremental sample means. The root of the
bandit family: each sibling changes `choose_arm` and its own fields, nothing else.
Reference: Sutton & Barto, Reinforcement Learning (2nd ed.), sections 2.2-2.4.
Run:  python algos/bandit_epsilon_greedy.py --epsilon 0.01
Docs: docs/algorithms/bandit_epsilon_greedy.md   Parent: none (children: the other bandit_*.py)
Shapes: R independent bandits (runs), K arms, T pulls.
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
from dataclasses import asdict, dataclass
from typing import Callable, NoReturn, Optional

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
    # == ENV: bernoulli_bandit ==
    env_id: str = "BernoulliBandit-v0"
    """name of the bandit in run directories and the summary; the bandit itself is built in `main`"""
    num_arms: int = 10
    """K, arms per bandit; arm k pays 1 with probability p_k ~ Uniform(0, 1) drawn from the seed"""
    num_runs: int = 200
    """R, independent bandits played side by side; regret is the mean over them"""
    total_steps: int = 5000
    """T, pulls per bandit"""
    eval_episodes: int = 100
    """greedy pulls of every bandit in the final evaluation (its arm with the highest estimate)"""
    save_plot: bool = False
    """write the regret curve to `<run dir>/regret.png`"""
    # == ALGO: bandit_epsilon_greedy ==
    epsilon: float = 0.01
    """probability of pulling a uniformly random arm instead of the greedy one"""


# == SHARED: bandit_greedy ==
def greedy_arm(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """argmax_k Q[r, k], ties broken uniformly at random (Sutton & Barto 2.4), never always the lowest k."""
    return (rng.random(q.shape) * (q == q.max(axis=1, keepdims=True))).argmax(axis=1)  # [R, K] -> [R]


# == ALGO: bandit_epsilon_greedy ==
def choose_arm(q: np.ndarray, n: np.ndarray, t: int, rng: np.random.Generator, args: Args) -> np.ndarray:
    """Epsilon-greedy: a uniformly random arm with probability epsilon, else argmax_k Q[r, k]."""
    num_runs, num_arms = q.shape
    explore = rng.random(num_runs) < args.epsilon  # [R]
    return np.where(explore, rng.integers(num_arms, size=num_runs), greedy_arm(q, rng))  # [R, K] -> [R]


# == SHARED: bandit_main ==
def evaluate(q: np.ndarray, probs: np.ndarray, args: Args, stop: threading.Event) -> list[float]:
    """Each episode pulls every bandit's greedy arm once, with draws of the evaluation's own; returns the
    mean reward over the R bandits of each episode that finished."""
    rng = np.random.default_rng([args.seed, 1])  # no training draw and no other --seed shares these
    greedy_p = probs[np.arange(len(q)), greedy_arm(q, rng)]  # [R] success probability of the greedy arm
    returns = []
    while len(returns) < args.eval_episodes and not stop.is_set():
        returns.append(float((rng.random(len(q)) < greedy_p).mean()))  # [R] Bernoulli(p) -> mean
    return returns


def main(args: Args) -> dict:
    check_args(args)
    num_runs, num_arms = args.num_runs, args.num_arms
    nbytes = 8 * (args.total_steps + 10 * num_runs * num_arms) + 32 * args.eval_episodes  # [T], ~10 [R, K]
    check_memory(nbytes, "--total-steps, --num-runs, --num-arms, --eval-episodes")
    rng = np.random.default_rng(args.seed)
    probs = rng.uniform(size=(num_runs, num_arms))  # [R, K] success probability p_k of each arm
    q, n = np.zeros((num_runs, num_arms)), np.zeros((num_runs, num_arms))  # [R, K] estimates Q, pulls N
    if args.load_model:
        q, n = load_estimates(args.load_model, q.shape)
    run_dir, writer, stop = start_run(args, args.env_id)
    runs, best_p = np.arange(num_runs), probs.max(axis=1)  # [R], [R] p* of each bandit
    regret, total_reward = np.zeros(num_runs), np.zeros(num_runs)  # [R] sum_t p* - p_{a_t}, sum_t r_t
    regret_curve = np.zeros(args.total_steps)  # [T] regret after each pull, mean over the bandits
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    start_time, t = time.time(), 0
    while t < args.total_steps and not stop.is_set():
        arms = choose_arm(q, n, t, rng, args)  # [R]
        p = probs[runs, arms]  # [R]
        rewards = (rng.random(num_runs) < p).astype(np.float64)  # [R] Bernoulli(p)
        n[runs, arms] += 1
        q[runs, arms] += (rewards - q[runs, arms]) / n[runs, arms]  # incremental sample mean
        regret += best_p - p  # expected, not sampled: luck in the rewards cannot hide a bad arm
        total_reward += rewards
        regret_curve[t] = regret.mean()
        t += 1
        if t % 100 == 0 or t == args.total_steps:
            writer.add_scalar("charts/regret", regret_curve[t - 1], t)
            writer.add_scalar("charts/mean_reward", total_reward.mean() / t, t)
            writer.add_scalar("charts/best_arm_found", (q.argmax(1) == probs.argmax(1)).mean(), t)
            progress.update(t - progress.n)
            progress.set_postfix(regret=f"{regret_curve[t - 1]:.1f}")
    progress.close()
    train_seconds = time.time() - start_time
    writer.add_scalar("charts/SPS", t * num_runs / max(train_seconds, 1e-9), t)
    interrupted = stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    returns = evaluate(q, probs, args, stop)
    if args.save_model:
        write_atomic(f"{run_dir}/model.npz", lambda f: np.savez(f, q=q, n=n))
    if args.save_plot:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.5), layout="tight")
        ax = fig.add_subplot(title=args.exp_name, xlabel="pulls", ylabel=f"regret (mean of {num_runs})")
        ax.plot(np.arange(1, t + 1), regret_curve[:t])
        write_atomic(f"{run_dir}/regret.png", lambda f: fig.savefig(f, format="png", dpi=100))
    return finish_run(
        args, run_dir, writer, returns, total_steps=t, num_updates=t * num_runs,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
        regret=float(regret.mean()), regret_std=float(regret.std()), total_reward=float(total_reward.mean()),
        best_arm_expected_reward=float(best_p.mean()),
    )  # fmt: skip


# == ALGO: bandit_epsilon_greedy ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    check_bandit_args(args, unit_interval=("epsilon",))


# == SHARED: bandit_checks ==
def check_bandit_args(args: Args, unit_interval: tuple = (), **at_least: float) -> None:
    """The family's rules, plus the algorithm's own fields' minimum (`at_least`) or [0, 1] (`unit_interval`)."""
    at_least |= {"num_arms": 2, "num_runs": 1, "total_steps": 0, "eval_episodes": 1}
    check_common_args(args, at_least, unit_interval)
    if args.env_id != "BernoulliBandit-v0":
        fail(f"unknown --env-id {args.env_id!r}: this file builds only BernoulliBandit-v0")
    if args.capture_video:
        fail("--capture-video: a bandit has nothing to render, so no video can be recorded")


def load_estimates(path: str, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Estimates Q and pull counts N ([R, K] each) saved by `--save-model`; one line on a missing or corrupt
    file, a pickle, other keys or shapes, a dtype that is not a number, NaN, inf or a negative value."""
    try:
        with np.load(path, allow_pickle=False) as data:
            q, n = data["q"], data["n"]
    except Exception as error:
        fail(f"cannot load --load-model {path!r}: {type(error).__name__}: {error}")
    for name, x in (("q", q), ("n", n)):
        if x.shape != shape or x.dtype.kind not in "iuf":
            fail(f"--load-model {path!r}: {name} is {x.dtype} {x.shape}, expected numbers of shape {shape}")
        if not (np.isfinite(x).all() and (x >= 0).all()):
            fail(f"--load-model {path!r}: {name} holds NaN, inf or a negative value")
    return q.astype(np.float64), n.astype(np.float64)


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


# == SHARED: entry_point ==
if __name__ == "__main__":
    main(tyro.cli(Args))
