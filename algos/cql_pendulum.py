"""CQL: conservative Q-learning, offline, on Pendulum, from a fixed dataset and nothing else.

SAC trained only on logged transitions overestimates actions the data never tried; CQL adds to the
critic loss cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data)), pushing Q down on actions the policy
or a uniform proposal picks and up on the data's. `--cql-alpha 0` is plain offline SAC. Without
`--dataset`, a short online SAC run builds a "medium-replay" set (its whole replay buffer) first.
Paper: Kumar et al. 2020, https://arxiv.org/abs/2006.04779   Run: python algos/cql_pendulum.py
Docs: docs/algorithms/cql_pendulum.md   Parent: none (stands alone; its SAC follows sac_pendulum)
Shapes: B batch, N actions per proposal, D dataset transitions, O obs dim, A action dim.
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
import torch.nn as nn
import tyro
from torch.distributions import Normal
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
    """gymnasium id; any env with a flat Box observation and a Box action space"""
    total_steps: int = 4000
    """OFFLINE gradient steps of the CQL agent (no environment steps: the dataset is all it sees)"""
    eval_episodes: int = 10
    """episodes of the final deterministic evaluation (the only environment steps after the dataset)"""
    # == ALGO: cql_pendulum ==
    dataset: Optional[str] = None
    """`.npz` with observations, actions, rewards, next_observations, terminations; None builds one"""
    dataset_steps: int = 8000
    """environment steps of the online SAC run whose whole replay buffer becomes the dataset (D)"""
    learning_starts: int = 1000
    """uniformly random actions before the dataset-building SAC starts learning (env steps)"""
    gamma: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target critics: theta' <- tau * theta + (1 - tau) * theta'"""
    batch_size: int = 128
    """B, transitions per gradient step (online and offline)"""
    hidden_dim: int = 128
    """width of the two hidden layers of the actor and of each critic"""
    policy_lr: float = 3e-4
    """Adam step size of the actor (and of log_alpha, the entropy temperature)"""
    q_lr: float = 1e-3
    """Adam step size of the twin critics"""
    cql_alpha: float = 1.0
    """weight of the conservative penalty logsumexp_a Q(s, a) - Q(s, a_data); 0 is plain offline SAC"""
    cql_num_actions: int = 4
    """N, actions per state from each proposal (uniform, pi(s), pi(s')) in the logsumexp"""


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


# == ALGO: cql_pendulum ==
def check_args(args: Args) -> None:
    low = dict(total_steps=0, dataset_steps=1, learning_starts=0, eval_episodes=1, batch_size=1, hidden_dim=1)
    for name, minimum in (low | dict(cql_num_actions=1, cql_alpha=0.0)).items():
        if getattr(args, name) < minimum:
            fail(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    for name in ("gamma", "tau", "policy_lr", "q_lr"):
        if not 0.0 < getattr(args, name) <= 1.0:
            fail(f"--{name.replace('_', '-')} must be in (0, 1], got {getattr(args, name)}")
    if args.env_id not in gym.registry:
        fail(f"unknown --env-id {args.env_id!r}")


class CountSteps(gym.Wrapper):
    """Adds every env.step to counter["env_steps"]: the summary shows that offline training took none."""

    def __init__(self, env: gym.Env, counter: dict):
        super().__init__(env)
        self.counter = counter

    def step(self, action):
        self.counter["env_steps"] += 1
        return self.env.step(action)


def make_env(env_id: str, seed: int, counter: dict, video_dir: Optional[str] = None) -> gym.Env:
    env = gym.make(env_id, render_mode="rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, lambda e: True, disable_logger=True)
    env = CountSteps(gym.wrappers.RecordEpisodeStatistics(env), counter)
    env.action_space.seed(seed)
    return env


def mlp(n_in: int, hidden_dim: int, n_out: int) -> nn.Sequential:
    layers = [nn.Linear(n_in, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden_dim, n_out))


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy scaled to the action box."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dim, 2 * act_dim)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))  # [A]
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))  # [A]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample a ~ pi(.|s) with the reparameterisation trick; returns a [B, A] and log pi(a|s) [B]."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)  # [B, O] -> [B, A] each
        dist = Normal(mean, log_std.clamp(-5.0, 2.0).exp())
        u = dist.rsample()  # [B, A] before the squash
        log_prob = (dist.log_prob(u) - torch.log(self.scale * (1 - u.tanh() ** 2) + 1e-6)).sum(-1)  # [B]
        return u.tanh() * self.scale + self.bias, log_prob

    def act(self, obs: torch.Tensor) -> torch.Tensor:  # the deterministic action tanh(mean), for evaluation
        return self.net(obs).chunk(2, dim=-1)[0].tanh() * self.scale + self.bias  # [B, O] -> [B, A]


class SAC(nn.Module):
    """Actor, twin critics, their targets and log_alpha (the entropy temperature, in log space)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.actor = Actor(obs_dim, act_dim, hidden_dim, low, high)
        self.qs = nn.ModuleList([mlp(obs_dim + act_dim, hidden_dim, 1) for _ in range(2)])
        self.q_targets = nn.ModuleList([mlp(obs_dim + act_dim, hidden_dim, 1) for _ in range(2)])
        self.q_targets.load_state_dict(self.qs.state_dict())
        self.log_alpha = nn.Parameter(torch.zeros(()))

    def q(self, obs: torch.Tensor, actions: torch.Tensor, target: bool = False) -> torch.Tensor:
        x = torch.cat([obs, actions], dim=-1)  # [..., O], [..., A] -> [..., O + A]
        return torch.stack([q(x).squeeze(-1) for q in (self.q_targets if target else self.qs)])  # [2, ...]


def make_optimizers(agent: SAC, args: Args) -> list[torch.optim.Optimizer]:
    """Adam for the actor, the twin critics and log_alpha, in that order."""
    groups = (agent.actor.parameters(), agent.qs.parameters(), [agent.log_alpha])
    return [torch.optim.Adam(p, lr=lr) for p, lr in zip(groups, (args.policy_lr, args.q_lr, args.policy_lr))]


def td_target(rewards, next_q, next_log_prob, terminations, log_alpha, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_j Q'_j(s', a') - alpha log pi(a'|s')); a truncation bootstraps."""
    soft_value = next_q.min(0).values - log_alpha.exp() * next_log_prob  # [2, B] -> [B]
    return rewards + gamma * (1.0 - terminations) * soft_value  # [B]


def cql_penalty(q_data: torch.Tensor, q_proposals: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
    """CQL(H): logsumexp_a (Q(s,a) - log mu(a|s)) - Q(s,a_data); q_data [2, B], the others [2, B, 3N]."""
    return (torch.logsumexp(q_proposals - log_density, dim=-1) - q_data).mean(-1).sum()  # [2, B] -> ()


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)  # t <- t + tau * (s - t)


def update(agent: SAC, optimizers, batch: dict, args: Args, cql_alpha: float) -> dict:
    """One SAC gradient step (critics, actor, temperature), with the CQL penalty when cql_alpha > 0."""
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]  # [B, .]
    with torch.no_grad():
        next_actions, next_logp = agent.actor(next_obs)  # [B, A], [B]
        next_q = agent.q(next_obs, next_actions, target=True)  # [2, B]
        y = td_target(batch["rewards"], next_q, next_logp, batch["terminations"], agent.log_alpha, args.gamma)
    q_data = agent.q(obs, actions)  # [2, B]
    td_loss = 0.5 * ((q_data - y) ** 2).mean(-1).sum()
    penalty = torch.zeros(())
    if cql_alpha > 0.0:
        n, (b, a_dim) = args.cql_num_actions, actions.shape
        obs_n = obs.repeat_interleave(n, dim=0)  # [B, O] -> [B*N, O]
        with torch.no_grad():  # proposals: N uniform actions, N from pi(.|s), N from pi(.|s')
            pi_actions, pi_log_prob = agent.actor(obs_n)  # [B*N, A], [B*N]
            next_pi_actions, next_pi_log_prob = agent.actor(next_obs.repeat_interleave(n, dim=0))  # same
            uniform = (torch.rand_like(pi_actions) * 2 - 1) * agent.actor.scale + agent.actor.bias  # [B*N, A]
        proposals = torch.cat([uniform, pi_actions, next_pi_actions]).view(3, b, n, a_dim)  # [3, B, N, A]
        q_prop = agent.q(obs_n.view(1, b, n, -1).expand(3, -1, -1, -1), proposals)  # [2, 3, B, N]
        q_prop = q_prop.permute(0, 2, 1, 3).reshape(2, b, 3 * n)  # [2, B, 3N]
        log_uniform = -torch.log(2 * agent.actor.scale).sum().expand(b, n)  # [B, N] log density of U(box)
        log_density = torch.cat([log_uniform, pi_log_prob.view(b, n), next_pi_log_prob.view(b, n)], -1)
        penalty = cql_penalty(q_data, q_prop, log_density)  # log_density [B, 3N]
    q_loss = td_loss + cql_alpha * penalty
    new_actions, log_prob = agent.actor(obs)  # [B, A], [B]
    actor_loss = (agent.log_alpha.exp().detach() * log_prob - agent.q(obs, new_actions).min(0).values).mean()
    alpha_loss = -(agent.log_alpha * (log_prob.detach() - actions.shape[-1])).mean()  # target entropy -A
    if not torch.isfinite(q_loss + actor_loss):
        fail(f"loss is {(q_loss + actor_loss).item()}")
    agent.zero_grad()
    (actor_loss + alpha_loss).backward()  # the three step together, from the same critics
    agent.qs.zero_grad()  # drop what the actor loss left in the critics' gradients
    q_loss.backward()
    for opt in optimizers:
        opt.step()
    soft_update(agent.q_targets, agent.qs, args.tau)
    losses = dict(td_loss=td_loss, cql_penalty=penalty, actor_loss=actor_loss, q_data=q_data.mean())
    return {name: value.detach() for name, value in losses.items()}  # tensors: .item() only when logged


def evaluate(actor: Actor, env: gym.Env, eval_episodes: int, seed: int) -> np.ndarray:
    """Deterministic policy tanh(mean) on `env`, episode i reset with seed + i; returns the returns [n]."""
    returns = []
    for episode in range(eval_episodes):
        (obs, _), done, total = env.reset(seed=seed + episode), False, 0.0
        while not done:
            with torch.no_grad():
                action = actor.act(torch.as_tensor(obs, dtype=torch.float32)[None])[0]  # [1, O] -> [A]
            obs, reward, terminated, truncated, _ = env.step(action.numpy())
            done, total = terminated or truncated, total + float(reward)
        returns.append(total)
    return np.array(returns)


KEYS = ("observations", "actions", "rewards", "next_observations", "terminations")


def load_dataset(path: str, obs_dim: int, act_dim: int) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            dataset = {key: np.asarray(data[key], dtype=np.float32) for key in KEYS}
    except Exception as error:  # missing file, not an npz, missing key, object or text arrays
        fail(f"cannot load --dataset {path!r}: {' '.join(str(error).split())[:200]}")
    n = len(dataset["observations"])
    dataset["rewards"], dataset["terminations"] = dataset["rewards"].ravel(), dataset["terminations"].ravel()
    shapes = dict(observations=(n, obs_dim), actions=(n, act_dim), next_observations=(n, obs_dim))
    for key, shape in (shapes | dict(rewards=(n,), terminations=(n,))).items():
        if n < 1 or dataset[key].shape != shape or not np.isfinite(dataset[key]).all():
            fail(f"--dataset {path!r}: {key} has shape {dataset[key].shape}, expected finite {shape}, n > 0")
    return dataset


def collect_dataset(args: Args, env: gym.Env, writer: SummaryWriter, device) -> dict:
    """Online SAC for `--dataset-steps`; returns its whole replay buffer (random, poor and good episodes)."""
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    collector = SAC(obs_dim, act_dim, args.hidden_dim, env.action_space.low, env.action_space.high).to(device)
    optimizers = make_optimizers(collector, args)
    dims = dict(observations=(obs_dim,), actions=(act_dim,), next_observations=(obs_dim,))
    data = {k: np.zeros((args.dataset_steps, *dims.get(k, ())), np.float32) for k in KEYS}  # [D, ...] each
    obs, _ = env.reset(seed=args.seed)
    for step in range(args.dataset_steps):
        with torch.no_grad():
            policy_action = collector.actor(torch.as_tensor(obs, dtype=torch.float32)[None].to(device))[0][0]
        action = env.action_space.sample() if step < args.learning_starts else policy_action.cpu().numpy()
        next_obs, reward, terminated, truncated, info = env.step(action)
        for key, value in zip(KEYS, (obs, action, reward, next_obs, terminated)):
            data[key][step] = value  # next_obs is the true final observation: the reset comes below
        obs = next_obs
        if terminated or truncated:
            writer.add_scalar("dataset/episodic_return", info["episode"]["r"], step + 1)
            obs, _ = env.reset()
        if step >= args.learning_starts:
            idx = np.random.randint(step + 1, size=args.batch_size)  # [B]
            batch = {key: torch.as_tensor(value[idx]).to(device) for key, value in data.items()}
            update(collector, optimizers, batch, args, cql_alpha=0.0)
    return data  # the collector ends with this frame


def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    torch.set_num_threads(1)  # small networks: 1 thread is fastest; 2 stall each other on a busy 2-core CPU
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    counter = {"env_steps": 0}  # every env.step of this run, whichever env made it
    env = make_env(args.env_id, args.seed, counter)
    if not isinstance(env.action_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        fail(f"--env-id {args.env_id!r} needs a flat Box observation and a Box action space")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SAC(obs_dim, act_dim, args.hidden_dim, env.action_space.low, env.action_space.high).to(device)
    optimizers = make_optimizers(agent, args)
    dataset = load_dataset(args.dataset, obs_dim, act_dim) if args.dataset else None
    if args.load_model:
        try:
            agent.load_state_dict(torch.load(args.load_model, map_location=device, weights_only=True))
        except Exception as error:  # missing, corrupt, or another architecture
            fail(f"cannot load --load-model {args.load_model!r}: {' '.join(str(error).split())[:300]}")
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, global_step, data, env_steps_before = False, time.time(), 0, {}, 0
    try:
        if dataset is None and args.total_steps > 0:
            dataset = collect_dataset(args, env, writer, device)  # online: the only learning env steps
            np.savez(os.path.join(run_dir, "dataset.npz"), **dataset)
        env_steps_before = counter["env_steps"]  # the offline phase starts: no env.step until evaluation
        data = {key: torch.as_tensor(value).to(device) for key, value in (dataset or {}).items()}  # [D, ...]
        for global_step in range(1, args.total_steps + 1):
            idx = torch.randint(len(data["rewards"]), (args.batch_size,), device=device)  # [B]
            batch = {key: value[idx] for key, value in data.items()}  # [B, ...]
            losses = update(agent, optimizers, batch, args, args.cql_alpha)
            if global_step % 100 == 0 or global_step == args.total_steps:  # logging only
                for name, value in losses.items():
                    writer.add_scalar(f"losses/{name}", value.item(), global_step)
                writer.add_scalar("charts/SPS", global_step / (time.time() - start_time), global_step)
                progress.update(global_step - progress.n)
    except KeyboardInterrupt:
        interrupted = True
    offline_env_steps = counter["env_steps"] - env_steps_before  # must be 0 (tests check it)
    progress.close()
    env.close()
    train_seconds = max(time.time() - start_time, 1e-9)
    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
    eval_env = make_env(args.env_id, args.seed, counter, video_dir)
    returns = evaluate(agent.actor, eval_env, args.eval_episodes, args.seed)
    eval_env.close()
    if args.save_model:
        torch.save(agent.state_dict(), os.path.join(run_dir, "model.pt"))
    data_return = None if dataset is None else float(dataset["rewards"].mean() * env.spec.max_episode_steps)
    summary = {"algo": os.path.basename(__file__)[: -len(".py")], "env_id": args.env_id, "seed": args.seed}
    summary |= {"total_steps": global_step, "num_updates": global_step, "run_dir": run_dir}
    summary |= {"train_seconds": round(train_seconds, 3), "eval_episodes": args.eval_episodes}
    summary |= {"steps_per_second": round(global_step / train_seconds, 1), "interrupted": interrupted}
    summary |= {"eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std())}
    summary |= {"dataset_size": len(data.get("rewards", [])), "dataset_return": data_return}
    summary["offline_env_steps"] = offline_env_steps
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
