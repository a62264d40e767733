"""PPO on Pendulum-v1: the same clipped surrogate and GAE, with a Gaussian policy for continuous actions.

The step from ppo_cartpole: pi(a|s) = N(mu(s), diag(sigma^2)), mu an MLP (tanh hidden layers, linear
output) and log sigma a learned vector of its own (state-independent, as in CleanRL's
ppo_continuous_action.py). A sample is clipped to the Box bounds only when it is sent to the env;
the rollout keeps, and the ratio scores, the unclipped sample. Rewards are scaled by a constant
before GAE, so the critic's error stays small.
Paper: https://arxiv.org/abs/1707.06347 (GAE: https://arxiv.org/abs/1506.02438)
Run:  python algos/ppo_pendulum.py
Docs: docs/algorithms/ppo_pendulum.md   Parent: ppo_cartpole.py
Shapes: E envs, T steps per rollout, B valid transitions (<= T*E), M minibatch, O obs dim, A action dims.
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
import torch
import torch.nn as nn
import tyro
from tensorboard.compat.proto import event_pb2, summary_pb2
from torch import Tensor
from torch.distributions import Independent, Normal
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
    """gymnasium id of an environment with a Box action space (Pendulum-v1: 200 steps, never terminates)"""
    # one Pendulum episode's return spreads by about 85 over start states: a 10-episode mean wanders by 27
    eval_episodes: int = 50
    """episodes of the final evaluation, each acting with the mean action mu(s), clipped to the bounds"""
    # == ALGO: ppo_pendulum ==
    total_steps: int = 100_000
    """environment steps over all envs (E per vector step), the reset steps included"""
    num_envs: int = 4
    """E, environments stepped side by side; a rollout holds T * E steps"""
    num_steps: int = 512
    """T, steps per environment in each rollout (one rollout, then the update); at least 2"""
    hidden_dim: int = 64
    """units in each of the two hidden layers of the actor's mean and of the critic"""
    init_log_std: float = 0.0
    """log sigma at the start, the same for every action dimension (0: sigma = 1 action unit)"""
    reward_scale: float = 0.1
    """the rewards are multiplied by this before GAE and the critic see them (logged returns are unscaled)"""
    norm_obs: bool = False
    """feed the networks (s - mean) / std, clipped to +-10, with mean and variance running over the training
    observations (frozen at evaluation); kept in model.pt, so `--load-model` needs the same setting"""
    learning_rate: float = 1e-3
    """Adam step size, annealed linearly to 0 over `total_steps` when `anneal_lr`"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 at `total_steps`"""
    gamma: float = 0.95
    """discount factor; 1 / (1 - gamma) steps is the horizon the returns look ahead"""
    gae_lambda: float = 0.95
    """lambda of GAE: 0 is the one-step TD error, 1 the Monte-Carlo return minus V"""
    update_epochs: int = 10
    """K, passes over each rollout"""
    num_minibatches: int = 16
    """minibatches per epoch; the gradient steps per rollout are K * num_minibatches"""
    clip_coef: float = 0.2
    """epsilon, the probability ratio is clipped to [1 - epsilon, 1 + epsilon]"""
    norm_adv: bool = True
    """normalise the advantages to zero mean and unit variance within each minibatch"""
    vf_coef: float = 0.5
    """weight of the critic's squared error in the loss"""
    ent_coef: float = 0.0
    """weight of the entropy bonus (more exploration)"""
    max_grad_norm: float = 0.5
    """clip the global gradient norm of each step to this value"""


# == ALGO: ppo_pendulum ==
def make_env(args: Args) -> gym.vector.VectorEnv:
    """E copies of the environment, numpy-vectorised where the env has it (CartPole: 2x the steps/s); both
    kinds autoreset NEXT_STEP: the step after an episode's end only resets it (see main)."""
    mode = "vector_entry_point" if gym.spec(args.env_id).vector_entry_point else "sync"
    kwargs = {} if mode == "vector_entry_point" else {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode=mode, vector_kwargs=kwargs)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    if envs.single_observation_space.dtype != np.float32:  # MuJoCo observes float64; the networks are float32
        envs = gym.wrappers.vector.DtypeObservation(envs, np.float32)
    return envs


class RunningNorm(nn.Module):
    """x -> (x - mean) / sqrt(var + 1e-8), clipped to +-10, where mean and var run over every batch given to
    `update` (the parallel-variance rule of Chan et al.); an identity when not `active`. Buffers, not
    parameters: the optimizer never moves them, the state_dict saves them."""

    def __init__(self, dim: int, active: bool):
        super().__init__()
        self.active = active
        self.register_buffer("mean", torch.zeros(dim))  # [O]
        self.register_buffer("var", torch.ones(dim))  # [O]
        self.register_buffer("count", torch.tensor(1e-4))  # observations seen (a tiny prior)

    def update(self, x: Tensor) -> None:
        n, delta = x.shape[0], x.mean(0) - self.mean  # [N, O] -> [O]
        total = self.count + n
        sum_sq = self.var * self.count + x.var(0, unbiased=False) * n + delta**2 * self.count * n / total
        self.var.copy_(sum_sq / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-10.0, 10.0) if self.active else x


class Agent(nn.Module):
    """Actor pi(a|s) = N(mu(s), diag(sigma^2)) with mu an MLP (tanh hidden layers, linear output) and log sigma
    a learned vector that no state changes; critic V(s), a separate tanh MLP. Both see the normalised s."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden_dim: int, init_log_std: float = 0.0, norm_obs: bool = False
    ):
        super().__init__()
        h = hidden_dim
        self.obs_norm = RunningNorm(obs_dim, norm_obs)
        self.actor, self.critic = (
            nn.Sequential(nn.Linear(obs_dim, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, out_dim))
            for out_dim in (act_dim, 1)
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))  # [A] log sigma

    def policy(self, obs: Tensor) -> Independent:
        mean = self.actor(self.obs_norm(obs))  # [..., O] -> [..., A] mu(s)
        # Independent(..., 1): log_prob and entropy sum over the A action dimensions -> [...]
        return Independent(Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False), 1)

    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.obs_norm(obs)).squeeze(-1)  # [..., O] -> [...] V(s)

    def forward(self, obs: Tensor) -> tuple[Independent, Tensor]:
        return self.policy(obs), self.value(obs)  # [...] over [..., A], [...]


def compute_gae(
    rewards: Tensor, values: Tensor, terminations: Tensor, dones: Tensor, gamma: float, gae_lambda: float
) -> Tensor:
    """GAE(lambda) advantages [T, E], one backward pass over T, vectorised over E.

    values [T+1, E]: values[t + 1] is V of the observation after step t, the final observation
    when step t ended an episode, so a truncation bootstraps from V(final obs) and only
    `terminations` zero it. `dones` (terminated or truncated) cut the sum at the episode's end.
    """
    advantages = torch.zeros_like(rewards)  # [T, E]
    last = torch.zeros_like(rewards[0])  # [E]
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * values[t + 1] - values[t]  # [E]
        last = delta + gamma * gae_lambda * (1.0 - dones[t]) * last  # [E]
        advantages[t] = last
    return advantages


def update(agent: Agent, optimizer: torch.optim.Optimizer, batch: dict, args: Args, stop) -> dict:
    """PPO-clip: K epochs of minibatch steps on the rollout's valid transitions."""
    # DEVIATION: a constant reward scale in place of the running reward normalisation of baselines' PPO
    rewards = args.reward_scale * batch["rewards"]  # [T, E]
    advantages = compute_gae(
        rewards, batch["values"], batch["terminations"], batch["dones"], args.gamma, args.gae_lambda
    )  # [T, E]
    returns = advantages + batch["values"][:-1]  # [T, E] lambda-returns, the critic's target
    valid = batch["valid"].flatten()  # [T*E] False on the reset steps
    obs = batch["obs"].flatten(0, 1)[valid]  # [T, E, O] -> [B, O]
    actions = batch["actions"].flatten(0, 1)[valid]  # [T, E, A] -> [B, A] the unclipped samples
    old_logprobs = batch["logprobs"].flatten()[valid]  # [B]
    advantages, returns = advantages.flatten()[valid], returns.flatten()[valid]  # [B]
    minibatch_size = -(-len(actions) // args.num_minibatches)  # ceil(B / num_minibatches)
    for _ in range(args.update_epochs):
        for mb in torch.randperm(len(actions)).split(minibatch_size):  # [M] indices
            dist, values = agent(obs[mb])  # [M, O] -> over [M, A], [M]
            ratio = (dist.log_prob(actions[mb]) - old_logprobs[mb]).exp()  # [M, A] -> [M] pi_new / pi_old
            adv = advantages[mb]  # [M]
            if args.norm_adv and len(adv) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            clipped = ratio.clamp(1.0 - args.clip_coef, 1.0 + args.clip_coef)  # [M]
            policy_loss = -torch.min(ratio * adv, clipped * adv).mean()
            value_loss = 0.5 * ((values - returns[mb]) ** 2).mean()
            entropy = dist.entropy().mean()
            loss = policy_loss + args.vf_coef * value_loss - args.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()
        if stop.is_set():  # Ctrl-C or SIGTERM: end the update after this epoch
            break
    with torch.no_grad():
        clip_fraction = ((ratio - 1.0).abs() > args.clip_coef).float().mean()
    return {"loss": loss.detach(), "policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
            "entropy": entropy.detach(), "clip_fraction": clip_fraction,
            "sigma": agent.log_std.exp().mean().detach()}  # fmt: skip


def evaluate(agent: Agent, args: Args, run_dir: str, device: torch.device, stop) -> list[float]:
    """The mean action mu(s), clipped to the bounds, on start states of the evaluation's own; returns finished
    episodes."""
    env = gym.make(args.env_id, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", lambda e: True, disable_logger=True)
    seeds = np.random.default_rng([args.seed, 1])  # no training reset, no other --seed starts from these
    returns = []
    for _ in range(args.eval_episodes):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        episode_return, done = 0.0, False
        while not done and not stop.is_set():
            with torch.no_grad():
                mean = agent.policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).mean  # [A]
            action = np.clip(mean.cpu().numpy(), env.action_space.low, env.action_space.high)  # [A]
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return, done = episode_return + float(reward), terminated or truncated
        if not done:  # stopped mid-episode: only finished episodes count
            break
        returns.append(episode_return)
    env.close()
    return returns


def main(args: Args) -> dict:
    check_args(args)
    device = torch_setup(args)
    probe = gym.make(args.env_id)  # one copy gives the sizes and the bounds, before E copies are made
    obs_dim, act_dim = int(np.prod(probe.observation_space.shape)), int(np.prod(probe.action_space.shape))
    low, high = probe.action_space.low, probe.action_space.high  # [A] each, the Box bounds
    T, E, h = args.num_steps, args.num_envs, args.hidden_dim  # rollout in numpy and torch, activations, Adam
    check_memory((T + 1) * E * (2 * obs_dim + 2 * act_dim + 12 + 8 * h) * 4 + 32 * h * (obs_dim + h + act_dim),
                 "--num-steps, --num-envs and --hidden-dim")  # fmt: skip
    envs = make_env(args)
    agent = Agent(obs_dim, act_dim, h, args.init_log_std, args.norm_obs).to(device)
    if args.load_model:
        load_model(args.load_model, device, agent=agent)
        if agent.obs_norm.count.item() > 1e-3 and not args.norm_obs:  # statistics saved, but not to be used
            fail(f"--load-model {args.load_model!r} was trained with --norm-obs: give --norm-obs")
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, fused=True)
    obs_buf = np.zeros((T + 1, E, obs_dim), dtype=np.float32)  # [T+1, E, O] s_0 .. s_T
    actions_buf = np.zeros((T, E, act_dim), dtype=np.float32)  # [T, E, A] the samples, before clipping
    rewards_buf, terminations_buf, dones_buf = np.zeros((3, T, E), dtype=np.float32)  # [T, E] each
    valid_buf = np.zeros((T, E), dtype=bool)  # [T, E] False on a step that only resets its env
    run_dir, writer, stop = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    start_time, global_step, num_updates = time.time(), 0, 0
    (next_obs, _), next_done = envs.reset(seed=args.seed), np.zeros(E, dtype=bool)  # [E, O], [E]
    while global_step < args.total_steps and not stop.is_set():
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - global_step / args.total_steps)
        for step in range(T):
            # NEXT_STEP autoreset: the step after an episode's end only resets the env (reward 0,
            # action ignored). It joins two episodes, so it is marked invalid and never trained on.
            obs_buf[step], valid_buf[step] = next_obs, ~next_done
            with torch.no_grad():
                dist = agent.policy(torch.as_tensor(next_obs, device=device))  # [E, O] -> over [E, A]
            actions_buf[step] = dist.sample().cpu().numpy()  # [E, A] kept unclipped: the ratio scores these
            # the env gets the sample clipped to its bounds, no tanh squashing (CleanRL's choice)
            next_obs, reward, terminated, truncated, infos = envs.step(np.clip(actions_buf[step], low, high))
            next_done = terminated | truncated  # [E] ended for any reason; next_obs is then final
            rewards_buf[step], terminations_buf[step], dones_buf[step] = reward, terminated, next_done
            global_step += E
            for i in np.flatnonzero(infos.get("_episode", [])):
                writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
                progress.set_postfix(episodic_return=f"{infos['episode']['r'][i]:.0f}")
        obs_buf[T] = next_obs
        batch = {"obs": obs_buf, "actions": actions_buf, "rewards": rewards_buf,
                 "terminations": terminations_buf, "dones": dones_buf, "valid": valid_buf}  # fmt: skip
        batch = {name: torch.from_numpy(array).to(device) for name, array in batch.items()}
        with torch.no_grad():  # values[t + 1] is V(final obs) where step t ended an episode
            batch["values"] = agent.value(batch["obs"])  # [T+1, E, O] -> [T+1, E]
            log_pi = agent.policy(batch["obs"][:T]).log_prob(batch["actions"])  # [T, E, A] -> [T, E]
        batch["obs"], batch["logprobs"] = batch["obs"][:T], log_pi  # [T, E, O], [T, E] log pi(a|s)
        losses = update(agent, optimizer, batch, args, stop)
        num_updates += 1
        if args.norm_obs:  # after the update: the rollout, pi_old and the update all saw the same statistics
            agent.obs_norm.update(batch["obs"].flatten(0, 1))  # [T, E, O] -> [T*E, O]
        if not torch.isfinite(losses["loss"]):
            fail(f"loss is {losses['loss'].item()} at step {global_step}")
        for name, value in losses.items():
            writer.add_scalar(f"losses/{name}", value.item(), global_step)
        writer.add_scalar("charts/SPS", global_step / (time.time() - start_time), global_step)
        progress.update(T * E)
    progress.close()
    envs.close()
    train_seconds = time.time() - start_time
    interrupted = stop.is_set()
    stop.clear()  # from here a stop ends the evaluation
    returns = evaluate(agent, args, run_dir, device, stop)
    if args.save_model:
        save_model(f"{run_dir}/model.pt", agent=agent)
    return finish_run(
        args, run_dir, writer, returns, total_steps=global_step, num_updates=num_updates,
        train_seconds=round(train_seconds, 3), interrupted=interrupted or stop.is_set(),
    )  # fmt: skip


def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written; each file checks the fields it has."""
    at_least = {"total_steps": 0, "eval_episodes": 1, "torch_threads": 1, "num_envs": 1, "num_steps": 2}
    at_least |= dict.fromkeys(["hidden_dim", "update_epochs", "num_minibatches"], 1)
    at_least |= dict.fromkeys(["learning_rate", "vf_coef", "ent_coef", "max_grad_norm", "clip_coef"], 0.0)
    at_least["reward_scale"] = 0.0
    at_least = {name: low for name, low in at_least.items() if hasattr(args, name)}
    check_common_args(args, at_least, tuple(n for n in ("gamma", "gae_lambda") if hasattr(args, n)))
    check_env(args.env_id, args.capture_video)
    if not isinstance(gym.make(args.env_id).action_space, gym.spaces.Box):
        fail(f"--env-id {args.env_id!r} has no continuous (Box) action space")
    if not -20.0 <= args.init_log_std <= 5.0:  # sigma from 2e-9 (all but deterministic) to 148 action units
        fail(f"--init-log-std must be in [-20, 5], got {args.init_log_std}")


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
