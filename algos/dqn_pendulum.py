"""DQN on Pendulum-v1: the same DQN, with the torque range cut into --n-actions discrete torques.

Pendulum never terminates: every episode ends by the 200-step time limit, a truncation, so
the TD target always bootstraps. Both pendulum files log the batch's mean max_a Q(s, a)
(`charts/max_q`) to show the over-estimation that Double DQN removes.
Paper: Mnih et al. 2015, https://www.nature.com/articles/nature14236
Run:  python algos/dqn_pendulum.py
Docs: docs/algorithms/dqn_pendulum.md   Parent: dqn_cartpole.py (child: ddqn_pendulum.py)
Shapes: B batch, E envs, O obs dim, A discrete actions.
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
    # == ENV: pendulum ==
    env_id: str = "Pendulum-v1"
    """gymnasium id of a task with a one-dimensional continuous action (Pendulum-v1 ends after 200 steps)"""
    total_steps: int = 20000
    """environment steps, summed over the E parallel environments"""
    # one Pendulum episode's return spreads by about 85 over start states: a 10-episode mean wanders by 27
    eval_episodes: int = 50
    """episodes of the final greedy evaluation, from start states of its own (no training reset, no other `--seed`)"""
    n_actions: int = 11
    """A, torques evenly spaced over the action range, both ends included (11: -2.0, -1.6, ..., 2.0)"""
    num_envs: int = 4
    """E, environments stepped together; one network call picks the actions of all E"""
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
    """One Pendulum whose action is an index a into n_actions torques from low to high, both ends included."""
    env = gym.make(args.env_id, render_mode=render_mode)
    if not isinstance(env.action_space, gym.spaces.Box) or env.action_space.shape != (1,):
        fail(f"--env-id {args.env_id!r} does not have a one-dimensional continuous action")
    low, high = float(env.action_space.low[0]), float(env.action_space.high[0])
    step = (high - low) / (args.n_actions - 1)  # action a is the torque low + a * step
    discrete = gym.spaces.Discrete(args.n_actions)
    if env.observation_space.dtype != np.float32:  # MuJoCo observes float64; the networks are float32
        env = gym.wrappers.DtypeObservation(env, np.float32)
    return gym.wrappers.TransformAction(env, lambda a: np.float32([low + a * step]), discrete)  # a -> [1]


# == SHARED: dqn_parts ==
class QNetwork(nn.Sequential):
    """Q(s, .): an MLP from an observation to one value per discrete action, [B, O] -> [B, A]."""

    def __init__(self, obs_dim: int, n_actions: int, h: int):
        layers = nn.Linear(obs_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n_actions)
        super().__init__(*layers)  # [B, O] -> [B, h] -> [B, h] -> [B, A]


# == SHARED: replay_buffer ==
class ReplayBuffer:
    """Preallocated ring buffer of transitions (s, a, r, s', terminated): numpy in, tensors out."""

    def __init__(self, size: int, obs_dim: int):
        self.obs, self.next_obs = np.zeros((2, size, obs_dim), dtype=np.float32)  # [N, O] each
        self.actions = np.zeros(size, dtype=np.int64)  # [N]
        self.rewards = np.zeros(size, dtype=np.float32)  # [N]
        self.terminations = np.zeros(size, dtype=np.float32)  # [N] 1.0 only at a true terminal state
        self.size, self.added = size, 0  # once added > size, each add overwrites the oldest

    def add(self, obs, actions, rewards, next_obs, terminations) -> None:
        """Store the E transitions of one vector step (arrays with leading dimension E)."""
        idx = (self.added + np.arange(len(actions))) % self.size  # [E]
        self.obs[idx], self.next_obs[idx], self.actions[idx] = obs, next_obs, actions
        self.rewards[idx], self.terminations[idx] = rewards, terminations
        self.added += len(actions)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> tuple:
        idx = rng.integers(min(self.added, self.size), size=batch_size)  # [B]
        batch = (self.obs, self.actions, self.rewards, self.next_obs, self.terminations)
        return tuple(torch.from_numpy(x[idx]).to(device) for x in batch)  # [B, O], [B], [B], [B, O], [B]


# == SHARED: soft_update ==
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging theta_target <- tau * theta + (1 - tau) * theta_target (tau = 1: hard copy)."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), source.parameters()):
            target_param.lerp_(param, tau)


# == ALGO: dqn_pendulum ==
def td_target(q_network: nn.Module, target_network: nn.Module, rewards, next_obs, terminations, gamma: float):
    """DQN: y = r + gamma * (1 - terminated) * max_a' Q_target(s', a'), tensors [B] (next_obs [B, O]).

    Only a true termination zeroes the bootstrap; a time-limit truncation keeps it.
    """
    with torch.no_grad():
        next_q = target_network(next_obs).max(dim=1).values  # [B, O] -> [B, A] -> [B]
        return rewards + gamma * (1.0 - terminations) * next_q  # [B]


# == SHARED: dqn_main ==
def evaluate(q_network: nn.Module, args: Args, run_dir: str, device: torch.device, stop) -> list[float]:
    """Greedy policy argmax_a Q(s, a) on start states of the evaluation's own; returns finished episodes."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    returns, seeds = [], np.random.default_rng([args.seed, 1])  # no training reset or other --seed has these
    while len(returns) < args.eval_episodes and not stop.is_set():
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        episode_return, done = 0.0, False
        while not done and not stop.is_set():  # an episode cut by a stop does not count
            with torch.no_grad():
                q = q_network(torch.as_tensor(obs, device=device)[None])  # [1, O] -> [1, A]
            obs, reward, terminated, truncated, _ = env.step(int(q.argmax(dim=1)[0]))
            episode_return, done = episode_return + float(reward), terminated or truncated
        returns += [episode_return] if done else []
    env.close()
    return returns


def main(args: Args) -> dict:
    check_args(args)
    device = torch_setup(args)
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args)] * args.num_envs, autoreset_mode="SameStep")
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)  # SameStep: an episode's final obs is in infos
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        fail(f"--env-id {args.env_id!r} has no discrete action space")
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    h = args.hidden_dim  # bytes: 4 per stored float, 20 per weight (5 copies), 16 per activation in a batch
    nbytes = 4 * args.buffer_size * (2 * obs_dim + 4) + 20 * h * (obs_dim + h + n_actions)
    nbytes += 16 * args.batch_size * (obs_dim + 2 * h + n_actions)
    check_memory(nbytes, "--buffer-size, --hidden-dim and --batch-size")
    q_network = QNetwork(obs_dim, n_actions, h).to(device)
    if args.load_model:
        load_model(args.load_model, device, q_network=q_network)
    target_network = QNetwork(obs_dim, n_actions, h).to(device)
    target_network.load_state_dict(q_network.state_dict())  # theta_target starts as theta
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    rb, rng = ReplayBuffer(args.buffer_size, obs_dim), np.random.default_rng(args.seed)
    loss_fn = nn.functional.smooth_l1_loss if args.loss == "huber" else nn.functional.mse_loss
    decay_steps = max(args.exploration_fraction * args.total_steps, 1.0)  # of epsilon, in env steps
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    global_step, num_updates, next_log, recent_returns, start_time = 0, 0, args.log_frequency, [], time.time()
    obs, _ = envs.reset(seed=args.seed)  # [E, O]
    while global_step + args.num_envs <= args.total_steps and not stop.is_set():
        epsilon = max(args.end_e, args.start_e + (args.end_e - args.start_e) * global_step / decay_steps)
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
            target = td_target(q_network, target_network, rewards_b, next_obs_b, terms_b, args.gamma)  # [B]
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
            next_log, sps = next_log + args.log_frequency, global_step / (time.time() - start_time)
            scalars = {"charts/SPS": sps, "charts/epsilon": epsilon}
            if num_updates > 0:  # of the last batch
                scalars |= {"losses/td_loss": loss.detach(), "losses/q_values": q_taken.detach().mean()}
                scalars["charts/max_q"] = q_all.detach().max(dim=1).values.mean()  # shows over-estimation
            for tag, value in scalars.items():
                writer.add_scalar(tag, float(value), global_step)
            progress.set_postfix(ret=f"{np.mean(recent_returns or [0]):.1f}", sps=f"{sps:.0f}")
        progress.update(args.num_envs)
    progress.close()
    envs.close()
    train_seconds, interrupted = time.time() - start_time, stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    returns = evaluate(q_network, args, run_dir, device, stop)
    if args.save_model:
        save_model(f"{run_dir}/model.pt", q_network=q_network)
    return finish_run(
        args, run_dir, writer, returns, total_steps=global_step, num_updates=num_updates,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
        train_return_last10=float(np.mean(recent_returns or [0])),
    )  # fmt: skip


# == SHARED: dqn_checks ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    minimum = {"total_steps": 0, "learning_starts": 0, "n_actions": 2}  # any other int field but seed: 1
    at_least = {n: minimum.get(n, 1) for n, v in asdict(args).items() if type(v) is int and n != "seed"}
    check_common_args(args, at_least, ("gamma", "start_e", "end_e", "exploration_fraction", "tau"))
    if not (args.learning_rate > 0.0 and args.tau > 0.0):
        fail(f"--learning-rate and --tau must be > 0, got {args.learning_rate} and {args.tau}")
    check_memory(args.num_envs * 2**14, "--num-envs")  # before the E environments are made
    check_env(args.env_id, args.capture_video)


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
