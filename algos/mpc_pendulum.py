"""PETS-style model predictive control on Pendulum-v1: plan with a learned probabilistic ensemble.

An ensemble of Gaussian networks over the state change (and the reward unless `--known-reward`) is fit
by NLL to every transition so far. Before every action the cross-entropy method searches H-step action
sequences, scored by particles propagated through random members (TS1 or TS-inf); the first is executed.
Paper: Chua et al. 2018 (PETS), https://arxiv.org/abs/1805.12114
Run:  python algos/mpc_pendulum.py
Docs: docs/algorithms/mpc_pendulum.md   Parent: none (stands alone)
Shapes: K members, M rows each, N sequences, P particles each, H horizon, E elites, O obs, A act, I=O+A, D out.
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
    """gymnasium id of a task with a continuous (Box) action space; `--known-reward` needs Pendulum-v1"""
    max_episode_steps: int = 200
    """time limit of an episode (truncation), in env steps; Pendulum's own is 200"""
    total_steps: int = 2000
    """real environment steps of training (the sample budget), random episodes included"""
    eval_episodes: int = 10
    """episodes of the final evaluation (planning with the learned model), on start states of its own"""
    # == ALGO: mpc_pendulum ==
    random_episodes: int = 1
    """episodes of uniformly random actions before planning starts; their data seeds the model"""
    known_reward: bool = True
    """score plans with Pendulum's true reward r(s, a); `--no-known-reward` makes the ensemble predict it"""
    ensemble_size: int = 5
    """K, networks in the ensemble, each trained on its own bootstrap resample of the data"""
    hidden_dim: int = 64
    """units in each hidden layer of every ensemble member"""
    num_layers: int = 3
    """hidden layers (SiLU) of every ensemble member"""
    learning_rate: float = 1e-3
    """Adam step size of the ensemble"""
    weight_decay: float = 1e-4
    """L2 weight decay of the ensemble (Adam's coupled decay); guards the model against overfitting"""
    batch_size: int = 64
    """transitions per member in one gradient step of the model fit"""
    model_epochs: int = 25
    """passes over (each member's bootstrap of) all data at every refit, i.e. after every episode"""
    max_log_var: float = 0.5
    """initial upper bound of the predicted log-variance (normalised units); learned, softly applied"""
    min_log_var: float = -10.0
    """initial lower bound of the predicted log-variance (normalised units); learned, softly applied"""
    log_var_bound_coef: float = 0.01
    """weight of the loss term sum(max_log_var) - sum(min_log_var) that keeps the bounds tight"""
    horizon: int = 25
    """H, actions in a planned sequence (env steps looked ahead)"""
    population_size: int = 64
    """N, action sequences sampled in each CEM iteration"""
    num_elites: int = 10
    """E, best sequences whose mean and std become the next CEM sampling distribution"""
    cem_iterations: int = 5
    """CEM refinements per action (each scores N sequences over H model steps)"""
    cem_alpha: float = 0.1
    """weight of the old mean/std when moving to the elites' (0: jump to the elites' statistics)"""
    cem_init_std: float = 0.5
    """initial CEM std of every action, as a fraction of the action range (high - low)"""
    num_particles: int = 5
    """P, model rollouts per candidate sequence; a multiple of K, P/K particles per member"""
    propagation: Literal["ts1", "ts_inf"] = "ts_inf"
    """trajectory sampling: ts_inf keeps a particle on one member, ts1 reassigns members every step"""


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One environment with the time limit `--max-episode-steps` (a truncation, never a termination)."""
    return gym.make(args.env_id, max_episode_steps=args.max_episode_steps, render_mode=render_mode)


class ProbabilisticEnsemble(nn.Module):
    """K Gaussian MLPs as batched matmuls: raw (s, a) in, normalised mean and bounded log-variance out."""

    def __init__(self, in_dim: int, out_dim: int, args: Args):
        super().__init__()
        dims, k = [in_dim] + [args.hidden_dim] * args.num_layers + [2 * out_dim], args.ensemble_size
        init = lambda i, o: torch.empty(k, i, o).uniform_(-(i**-0.5), i**-0.5)  # noqa: E731  nn.Linear's
        self.weights = nn.ParameterList(nn.Parameter(init(i, o)) for i, o in zip(dims[:-1], dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(k, 1, o)) for o in dims[1:])
        self.max_log_var = nn.Parameter(torch.full((out_dim,), args.max_log_var))
        self.min_log_var = nn.Parameter(torch.full((out_dim,), args.min_log_var))
        self.register_buffer("in_mean", torch.zeros(in_dim))  # normalisation statistics, set by fit_model
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(out_dim))
        self.register_buffer("out_std", torch.ones(out_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = (x - self.in_mean) / self.in_std  # [K, M, I]
        for layer in range(len(self.weights)):
            h = torch.baddbmm(self.biases[layer], h, self.weights[layer])  # [K, M, in] -> [K, M, out]
            h = F.silu(h) if layer < len(self.weights) - 1 else h  # no activation on the output layer
        mean, raw_log_var = h.chunk(2, dim=-1)  # [K, M, 2D] -> 2 x [K, M, D]
        log_var = self.max_log_var - F.softplus(self.max_log_var - raw_log_var)  # soft upper bound (PETS)
        log_var = self.min_log_var + F.softplus(log_var - self.min_log_var)  # soft lower bound
        return mean, log_var


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log N(target; mean, exp(log_var)) up to a constant: summed over D and K, averaged over M."""
    return (((mean - target) ** 2) * torch.exp(-log_var) + log_var).sum(-1).mean(-1).sum()  # [K, M, D] -> []


def fit_model(model, optimizer, inputs: torch.Tensor, targets: torch.Tensor, args: Args) -> tuple[float, int]:
    """Refit on all data: new normalisation statistics, one bootstrap per member, `model_epochs` passes."""
    for data, mean, std in ((inputs, model.in_mean, model.in_std), (targets, model.out_mean, model.out_std)):
        mean.copy_(data.mean(0))  # [I] or [D]
        std.copy_(data.std(0).clamp_min(1e-6))  # clamp: a constant column must not divide by 0
    normalised = (targets - model.out_mean) / model.out_std  # [T, D]
    n, k = len(inputs), args.ensemble_size
    bootstrap = torch.randint(
        n, (k, n), device=inputs.device
    )  # [K, T] each member's resample, with replacement
    for _ in range(args.model_epochs):
        order = bootstrap.gather(
            1, torch.rand(k, n, device=inputs.device).argsort(1)
        )  # [K, T] shuffled per member
        for start in range(0, n, args.batch_size):
            idx = order[:, start : start + args.batch_size]  # [K, B]
            mean, log_var = model(inputs[idx])  # [K, B, I] -> 2 x [K, B, D]
            loss = gaussian_nll(mean, log_var, normalised[idx])
            loss = loss + args.log_var_bound_coef * (model.max_log_var.sum() - model.min_log_var.sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return loss.item(), args.model_epochs * -(-n // args.batch_size)  # loss of the last batch, gradient steps


def pendulum_reward(obs: torch.Tensor, action: torch.Tensor, max_torque: float) -> torch.Tensor:
    """Pendulum-v1's reward -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2), from obs (cos, sin, theta_dot)."""
    theta = torch.atan2(obs[..., 1], obs[..., 0])  # [M] in [-pi, pi], as angle_normalize
    u = action[..., 0].clamp(-max_torque, max_torque)  # [M]
    return -(theta**2 + 0.1 * obs[..., 2] ** 2 + 0.001 * u**2)  # [M]


def predicted_returns(model, obs: torch.Tensor, actions: torch.Tensor, max_torque: float, args, generator):
    """Mean over P particles of the summed predicted rewards of each candidate sequence (PETS, eq. 4)."""
    n, horizon, a = actions.shape  # [N, H, A]
    k, m, o = args.ensemble_size, args.num_particles // args.ensemble_size, obs.shape[-1]
    # particles live as [K, M = N*P/K]: row (j, i*P/K + l) is particle j*P/K + l of candidate i, on member j
    acts = actions.transpose(0, 1)[:, None, :, None].expand(horizon, k, n, m, a).reshape(horizon, k, n * m, a)
    noise = torch.randn((horizon, k, n * m, model.out_mean.shape[0]), generator=generator, device=obs.device)
    state, states, rewards = obs.expand(k, n * m, o), [], []  # [K, M, O]
    for t in range(horizon):
        if args.propagation == "ts1":  # every particle draws a new member: shuffle a candidate's P particles
            grouped = state.view(k, n, m, o).transpose(0, 1).reshape(n, k * m, o)  # [N, P, O]
            perm = torch.rand((n, k * m), generator=generator, device=obs.device).argsort(1)
            perm = perm[..., None].expand(
                n, k * m, o
            )  # [N, P, O] a random order of each candidate's particles
            state = grouped.gather(1, perm).view(n, k, m, o).transpose(0, 1).reshape(k, n * m, o)
        mean, log_var = model(torch.cat([state, acts[t]], -1))  # [K, M, I] -> 2 x [K, M, D]
        sample = (mean + torch.exp(0.5 * log_var) * noise[t]) * model.out_std + model.out_mean  # [K, M, D]
        states.append(state)
        rewards.append(sample[..., o:])  # [K, M, 1] the model's reward, [K, M, 0] with known_reward
        state = state + sample[..., :o]  # [K, M, O], s_{t+1} = s_t + delta
    if args.known_reward:  # r(s_t, a_t) for all t at once: fewer small ops in the loop
        returns = pendulum_reward(torch.stack(states), acts, max_torque).sum(0)  # [H, K, M] -> [K, M]
    else:
        returns = torch.stack(rewards).sum((0, 3))  # [H, K, M, 1] -> [K, M]
    return returns.view(k, n, m).mean((0, 2))  # [K, M] -> [N]


def cem_optimize(score_fn, mean: torch.Tensor, low: torch.Tensor, high: torch.Tensor, args: Args, generator):
    """Cross-entropy method: sample N sequences around mean, refit mean/std to the E best; returns mean."""
    std = torch.ones_like(mean) * args.cem_init_std * (high - low)  # [H, A]
    for _ in range(args.cem_iterations):
        noise = torch.randn((args.population_size, *mean.shape), generator=generator, device=mean.device)
        candidates = (mean + std * noise).clamp(low, high)  # [N, H, A]; DEVIATION: clipped, PETS truncates
        elites = candidates[score_fn(candidates).topk(args.num_elites).indices]  # [E, H, A]
        mean = args.cem_alpha * mean + (1 - args.cem_alpha) * elites.mean(0)  # [H, A]
        std = args.cem_alpha * std + (1 - args.cem_alpha) * elites.std(0, correction=0)  # [H, A]
    return mean


@torch.inference_mode()
def plan_action(model, obs: np.ndarray, plan: torch.Tensor, low, high, args: Args, generator):
    """One MPC step: CEM from the warm-start plan; returns the first action and the shifted plan."""
    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=low.device)  # [O]
    score = lambda a: predicted_returns(model, obs_t, a, high[0].item(), args, generator)  # noqa: E731
    plan = cem_optimize(score, plan, low, high, args, generator)  # [H, A]
    return plan[0].cpu().numpy(), torch.cat(
        [plan[1:], ((low + high) / 2)[None]]
    )  # [A], [H, A] shifted by one


def evaluate(model, args: Args, run_dir: str, low: torch.Tensor, high: torch.Tensor, stop) -> list[float]:
    """Plan with the learned model on start states of the evaluation's own; returns finished episodes."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    generator = torch.Generator(low.device).manual_seed(
        args.seed
    )  # the planner's samples: from the seed only
    seeds = np.random.default_rng([args.seed, 1])  # no training reset, no other --seed starts from these
    returns = []
    for _ in range(args.eval_episodes):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        plan = ((low + high) / 2).expand(args.horizon, -1)  # [H, A]
        episode_return, done = 0.0, False
        while not done and not stop.is_set():
            action, plan = plan_action(model, obs, plan, low, high, args, generator)
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return, done = episode_return + float(reward), terminated or truncated
        if not done:  # stopped mid-episode: only finished episodes count
            break
        returns.append(episode_return)
    env.close()  # RecordVideo writes the last video on close
    return returns


def main(args: Args) -> dict:
    check_args(args)
    device = torch_setup(args)
    env = gym.wrappers.RecordEpisodeStatistics(make_env(args))
    env.action_space.seed(args.seed)
    if not isinstance(env.action_space, gym.spaces.Box):
        fail(f"--env-id {args.env_id!r} has no continuous (Box) action space")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low = torch.as_tensor(env.action_space.low, device=device)  # [A]
    high = torch.as_tensor(env.action_space.high, device=device)  # [A]
    out_dim = obs_dim + (0 if args.known_reward else 1)
    k, h, particles = args.ensemble_size, args.hidden_dim, args.population_size * args.num_particles
    check_memory(  # the data and the refit's bootstrap indices; the ensemble with Adam; the planner's particles
        4 * args.total_steps * (2 * obs_dim + act_dim + 1 + 6 * k) + 16 * k * (h + 2 * out_dim) * (h + obs_dim)
        + 16 * k * h * h * args.num_layers + 4 * args.horizon * particles * (3 * obs_dim + act_dim + 2),
        "--total-steps, --hidden-dim, --ensemble-size, --num-layers, --horizon, --population-size, --num-particles",
    )  # fmt: skip
    model = ProbabilisticEnsemble(obs_dim + act_dim, out_dim, args).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    if args.load_model:
        load_model(args.load_model, device, model=model)
    inputs = torch.zeros(args.total_steps, obs_dim + act_dim, device=device)  # [T, I] (s, a) of every step
    targets = torch.zeros(args.total_steps, obs_dim + 1, device=device)  # [T, O + 1] (s' - s, r); D are fit
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    start_time, global_step = time.time(), 0
    generator = torch.Generator(device).manual_seed(args.seed)  # the planner's samples during training
    episode, num_updates, planning_seconds, planned = 0, 0, 0.0, 0
    obs, _ = env.reset(seed=args.seed)
    plan = ((low + high) / 2).expand(args.horizon, -1)  # [H, A] CEM mean, warm-started between steps
    while global_step < args.total_steps and not stop.is_set():
        if episode < args.random_episodes:
            action = env.action_space.sample()
        else:
            tic = time.perf_counter()
            action, plan = plan_action(model, obs, plan, low, high, args, generator)
            planning_seconds, planned = planning_seconds + time.perf_counter() - tic, planned + 1
        next_obs, reward, terminated, truncated, info = env.step(action)
        inputs[global_step] = torch.as_tensor(np.concatenate([obs, action]), device=device)
        # the true s' also at truncation: never the next episode's first obs
        targets[global_step] = torch.as_tensor(np.append(next_obs - obs, reward), device=device)
        global_step += 1
        progress.update(1)
        obs = next_obs
        if terminated or truncated:  # refit on everything so far, then a fresh episode
            writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
            writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)
            progress.set_postfix(ret=f"{float(info['episode']['r']):.1f}")
            loss, steps = fit_model(
                model, optimizer, inputs[:global_step], targets[:global_step, :out_dim], args
            )
            if not math.isfinite(loss):
                fail(f"model loss is {loss} at step {global_step}")
            num_updates, episode = num_updates + steps, episode + 1
            writer.add_scalar("losses/model_nll", loss, global_step)
            writer.add_scalar("charts/SPS", global_step / (time.time() - start_time), global_step)
            obs, _ = env.reset()
            plan = ((low + high) / 2).expand(args.horizon, -1)
    progress.close()
    env.close()
    train_seconds = time.time() - start_time
    interrupted = stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    returns = evaluate(model, args, run_dir, low, high, stop)
    if args.save_model:
        save_model(f"{run_dir}/model.pt", model=model)
    return finish_run(
        args, run_dir, writer, returns, total_steps=global_step, num_updates=num_updates,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
        planning_ms_per_action=round(1000 * planning_seconds / max(planned, 1), 2),
    )  # fmt: skip


def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    counts = {name: 1 for name, value in asdict(args).items() if type(value) is int and name != "seed"}
    check_common_args(args, counts | {"total_steps": 0, "random_episodes": 0}, ("cem_alpha",))
    if min(args.weight_decay, args.log_var_bound_coef) < 0 or min(args.learning_rate, args.cem_init_std) <= 0:
        fail("--weight-decay and --log-var-bound-coef must be >= 0, --learning-rate and --cem-init-std > 0")
    if not args.min_log_var < args.max_log_var:
        fail(f"--min-log-var must be < --max-log-var, got {args.min_log_var} and {args.max_log_var}")
    if args.num_elites > args.population_size or args.num_particles % args.ensemble_size:
        fail("--num-elites must be <= --population-size, --num-particles a multiple of --ensemble-size")
    for name in ("model_epochs", "cem_iterations"):  # inner loops a stop cannot cut: bound them
        if getattr(args, name) > 10_000:
            fail(f"--{name.replace('_', '-')} must be <= 10000, got {getattr(args, name)}")
    if args.cem_alpha == 1.0:
        fail("--cem-alpha must be < 1: at 1 the sampling distribution never moves towards the elites")
    check_env(args.env_id, args.capture_video)
    if args.known_reward and gym.spec(args.env_id).id != "Pendulum-v1":
        fail(f"--known-reward is Pendulum-v1's reward, got --env-id {args.env_id}; add --no-known-reward")


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
