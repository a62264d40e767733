"""GAIL: generative adversarial imitation learning on CartPole, without the environment's reward.

A discriminator D(s, a) learns to tell expert (state, action) pairs from the student's; PPO trains the
student on r = -log(1 - D(s, a)) alone: it is paid for looking like the expert. The expert is a PPO
teacher trained first on the true reward, then discarded (or demonstrations from `--expert-data`).
Paper: Ho & Ermon 2016, https://arxiv.org/abs/1606.03476   Run: python algos/gail_cartpole.py
Docs: docs/algorithms/gail_cartpole.md   Parent: none (stands alone; its PPO follows ppo_cartpole)
Shapes: T steps, E envs, B batch (T*E), M minibatch, N expert transitions, O obs dim, A actions.
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
import torch.nn.functional as F
import tyro
from torch.distributions import Categorical
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
    # == ENV: cartpole ==
    env_id: str = "CartPole-v1"
    """gymnasium id; any env with a Box observation and a Discrete action space"""
    num_envs: int = 8
    """E, environments stepped side by side (SyncVectorEnv), for the teacher and the student"""
    total_steps: int = 100000
    """student environment steps (over all envs); the teacher's steps are `--teacher-steps`"""
    eval_episodes: int = 10
    """episodes of the final greedy evaluation of the student (true environment return)"""
    # == ALGO: gail_cartpole ==
    expert_data: Optional[str] = None
    """`.npz` with `observations` [N, O] and `actions` [N] (ints); None trains a PPO teacher instead"""
    teacher_steps: int = 100000
    """environment steps of the PPO teacher (on the true reward); unused with `--expert-data`"""
    expert_episodes: int = 8
    """greedy teacher episodes kept as demonstrations (N = their total length, saved as `expert.npz`)"""
    num_steps: int = 128
    """T, steps per env per rollout; B = T * E transitions per PPO update (teacher and student)"""
    learning_rate: float = 2.5e-3
    """Adam step size of the actor-critic (teacher and student), annealed linearly to 0 in each phase"""
    gamma: float = 0.99
    """discount factor gamma"""
    gae_lambda: float = 0.95
    """GAE lambda: 0 is one-step TD, 1 is Monte Carlo"""
    num_minibatches: int = 4
    """minibatches per PPO epoch, M = ceil(B / num_minibatches) transitions each"""
    update_epochs: int = 4
    """K, passes over each rollout in the PPO update"""
    clip_coef: float = 0.2
    """epsilon of the clipped surrogate objective"""
    vf_coef: float = 0.5
    """weight of the value loss in the PPO loss"""
    hidden_dim: int = 64
    """width of the two hidden layers of the actor, the critic and the discriminator"""
    disc_learning_rate: float = 1e-4
    """Adam step size of the discriminator D, annealed linearly to 0 with the student's"""
    disc_updates: int = 4
    """discriminator gradient steps per rollout, each on `--batch-size` expert and student pairs"""
    batch_size: int = 256
    """pairs from each side (expert, student) in one discriminator gradient step"""


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


# == ALGO: gail_cartpole ==
def check_args(args: Args) -> None:
    low = dict(total_steps=0, teacher_steps=0, disc_updates=0, update_epochs=0, eval_episodes=1)
    low |= dict(expert_episodes=1, num_envs=1, num_steps=1, num_minibatches=1, hidden_dim=1, batch_size=1)
    for name, minimum in low.items():
        if getattr(args, name) < minimum:
            fail(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    for name in ("gamma", "gae_lambda", "learning_rate", "disc_learning_rate", "clip_coef"):
        if not 0.0 < getattr(args, name) <= (1.0 if name in ("gamma", "gae_lambda") else np.inf):
            fail(f"--{name.replace('_', '-')} must be > 0 (and <= 1 if a rate), got {getattr(args, name)}")
    if args.env_id not in gym.registry:
        fail(f"unknown --env-id {args.env_id!r}")


def make_env(env_id: str, seed: int, video_dir: Optional[str] = None):
    def thunk():
        env = gym.make(env_id, render_mode="rgb_array" if video_dir else None)
        if video_dir:
            env = gym.wrappers.RecordVideo(env, video_dir, lambda e: True, disable_logger=True)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env.action_space.seed(seed)
        return env

    return thunk


def mlp(n_in: int, hidden_dim: int, n_out: int, out_std: float) -> nn.Sequential:
    """Two tanh hidden layers; orthogonal init (gain sqrt 2, `out_std` on the output layer), zero biases."""
    layers = [nn.Linear(n_in, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, hidden_dim), nn.Tanh()]
    for linear in (layers := [*layers, nn.Linear(hidden_dim, n_out)])[::2]:
        nn.init.orthogonal_(linear.weight, out_std if linear is layers[-1] else np.sqrt(2))
        nn.init.zeros_(linear.bias)
    return nn.Sequential(*layers)


class Agent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden_dim: int):
        super().__init__()
        self.critic = mlp(obs_dim, hidden_dim, 1, out_std=1.0)
        self.actor = mlp(obs_dim, hidden_dim, n_actions, out_std=0.01)

    def get_action_and_value(self, x: torch.Tensor, action: Optional[torch.Tensor] = None):
        dist = Categorical(logits=self.actor(x))  # [B, O] -> [B, A]
        action = dist.sample() if action is None else action  # [B]
        return action, dist.log_prob(action), self.critic(x).squeeze(-1)  # [B] each


class Discriminator(nn.Sequential):
    """D(s, a) = sigmoid(logit): the probability that the pair (s, a) came from the expert."""

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(actions, self[0].in_features - obs.shape[-1]).float()  # [..] -> [.., A]
        return super().forward(torch.cat([obs, one_hot], -1)).squeeze(-1)  # [.., O + A] -> [..] logits


def discriminator_loss(expert_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: expert pairs are labelled 1, student pairs 0."""
    expert = F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
    return expert + F.binary_cross_entropy_with_logits(student_logits, torch.zeros_like(student_logits))


def discriminator_reward(logits: torch.Tensor) -> torch.Tensor:
    """r(s, a) = -log(1 - D(s, a)) = softplus(logit) > 0: a function of D alone, never of the env reward."""
    return F.softplus(logits)  # [T, E] -> [T, E]


def compute_gae(rewards, ro: dict, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over [T, E]; ro["next_values"] is V(s_{t+1}), from the final observation at a truncation."""
    deltas = rewards + gamma * ro["next_values"] * (1.0 - ro["terminations"]) - ro["values"]  # [T, E]
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[0])  # [T, E], [E]
    for t in reversed(range(rewards.shape[0])):
        last = deltas[t] + gamma * gae_lambda * (1.0 - ro["dones"][t]) * last  # an episode end cuts the sum
        advantages[t] = last
    return advantages, advantages + ro["values"]  # [T, E] advantages, returns


def collect_rollout(envs, agent: Agent, next_obs: torch.Tensor, num_steps: int):
    """T steps in every env: rollout, env rewards (kept apart), episodes (t, return, length), next obs."""
    keys = ("obs", "actions", "logprobs", "values", "terminations", "dones", "real_next_obs")
    ro, episodes, env_rewards = {k: [] for k in keys}, [], np.zeros((num_steps, len(next_obs)), np.float32)
    for t in range(num_steps):
        with torch.no_grad():
            action, logprob, value = agent.get_action_and_value(next_obs)  # [E, O] -> [E] each
        obs, env_rewards[t], terminated, truncated, infos = envs.step(action.cpu().numpy())
        real_next_obs = obs.copy()  # [E, O] SAME_STEP autoreset: `obs` is the reset obs where one ended
        for i in np.flatnonzero(terminated | truncated):
            real_next_obs[i] = infos["final_obs"][i]
        if "final_info" in infos:
            info, ended = infos["final_info"]["episode"], infos["final_info"]["_episode"]
            episodes += [(t, r, n) for r, n in zip(info["r"][ended], info["l"][ended])]
        step = (next_obs, action, logprob, value, terminated, terminated | truncated, real_next_obs)
        for key, x in zip(keys, step):
            ro[key].append(torch.as_tensor(x, dtype=torch.long if key == "actions" else torch.float32))
        next_obs = torch.as_tensor(obs, dtype=torch.float32, device=next_obs.device)  # [E, O]
    ro = {key: torch.stack(value).to(next_obs.device) for key, value in ro.items()}  # [T, E] or [T, E, O]
    with torch.no_grad():
        ro["next_values"] = agent.critic(ro["real_next_obs"]).squeeze(-1)  # [T, E, O] -> [T, E]
    return ro, env_rewards, episodes, next_obs


def ppo_update(agent: Agent, optimizer, ro: dict, advantages, returns, args: Args) -> dict:
    """K epochs of clipped-surrogate PPO over the flattened rollout; returns the last minibatch's losses."""
    obs, actions = ro["obs"].flatten(0, 1), ro["actions"].flatten()  # [T, E, O] -> [B, O]; [T, E] -> [B]
    logprobs, advantages, returns = ro["logprobs"].flatten(), advantages.flatten(), returns.flatten()  # [B]
    clip, minibatch = args.clip_coef, -(-len(obs) // args.num_minibatches)  # ceil(B / num_minibatches)
    for _ in range(args.update_epochs):
        for mb in torch.randperm(len(obs), device=obs.device).split(minibatch):  # [M]
            _, new_logprob, new_value = agent.get_action_and_value(obs[mb], actions[mb])  # [M] each
            ratio = (new_logprob - logprobs[mb]).exp()  # [M]
            adv = (advantages[mb] - advantages[mb].mean()) / (advantages[mb].std() + 1e-8)  # [M]
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            v_loss = 0.5 * ((new_value - returns[mb]) ** 2).mean()
            loss = pg_loss + args.vf_coef * v_loss
            if not torch.isfinite(loss):
                fail(f"PPO loss is {loss.item()}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {"policy_loss": pg_loss.item(), "value_loss": v_loss.item()}


def evaluate(agent: Agent, env_id: str, eval_episodes: int, seed: int, video_dir: Optional[str] = None):
    """Greedy policy on a fresh env seeded from `seed`: true returns [n], observations [N, O], actions [N]."""
    env, returns, observations, actions = make_env(env_id, seed, video_dir)(), [], [], []
    for episode in range(eval_episodes):
        (obs, _), done = env.reset(seed=seed + episode), False
        while not done:
            with torch.no_grad():
                action = agent.actor(torch.as_tensor(obs, dtype=torch.float32)).argmax().item()  # [O] -> ()
            observations, actions = observations + [obs], actions + [action]
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        returns.append(float(info["episode"]["r"]))  # RecordEpisodeStatistics: the true return
    env.close()
    return np.array(returns), np.array(observations, dtype=np.float32), np.array(actions, dtype=np.int64)


def load_expert(path: str, obs_dim: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            observations, actions = data["observations"].astype(np.float32), data["actions"]
    except Exception as error:  # missing, not an npz, missing keys, object arrays
        fail(f"cannot load --expert-data {path!r}: {' '.join(str(error).split())}")
    ok = observations.shape[1:] == (obs_dim,) and actions.shape == (len(observations),) and len(actions) > 0
    ok = ok and np.isfinite(observations).all() and np.issubdtype(actions.dtype, np.integer)
    if not (ok and actions.min() >= 0 and actions.max() < n_actions):
        fail(f"--expert-data {path!r}: need observations [N>0, {obs_dim}], int actions [N] < {n_actions}")
    return observations, actions.astype(np.int64)


def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    torch.set_num_threads(1)  # small networks: 1 thread is fastest; 2 stall each other on a busy 2-core CPU
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    thunks = [make_env(args.env_id, args.seed + i) for i in range(args.num_envs)]
    envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    if not isinstance(action_space, gym.spaces.Discrete) or len(obs_space.shape) != 1:
        fail(f"--env-id {args.env_id!r} needs a flat Box observation and a Discrete action space")
    obs_dim, n_actions = obs_space.shape[0], int(action_space.n)
    agent = Agent(obs_dim, n_actions, args.hidden_dim).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    discriminator = Discriminator(*mlp(obs_dim + n_actions, args.hidden_dim, 1, out_std=1.0)).to(device)
    disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.disc_learning_rate)
    model = nn.ModuleDict(dict(agent=agent, discriminator=discriminator))  # what --save-model writes
    expert = load_expert(args.expert_data, obs_dim, n_actions) if args.expert_data else None
    if args.load_model:
        try:
            model.load_state_dict(torch.load(args.load_model, map_location=device, weights_only=True))
        except Exception as error:  # missing, corrupt, or another architecture
            fail(f"cannot load --load-model {args.load_model!r}: {' '.join(str(error).split())[:300]}")
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, global_step, num_updates = False, time.time(), 0, 0
    E, num_iterations = args.num_envs, args.total_steps // (batch := args.num_envs * args.num_steps)  # B
    expert_return, acc_expert, acc_student = None, None, None
    try:
        if expert is None and num_iterations > 0:  # the teacher: PPO on the TRUE reward, then discarded
            teacher = Agent(obs_dim, n_actions, args.hidden_dim).to(device)
            next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32).to(device)
            teacher_optimizer = torch.optim.Adam(teacher.parameters(), lr=args.learning_rate, eps=1e-5)
            for i in range(teacher_iterations := args.teacher_steps // batch):
                teacher_optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - i / teacher_iterations)
                ro, env_rewards, episodes, next_obs = collect_rollout(envs, teacher, next_obs, args.num_steps)
                for t, episode_return, _ in episodes:  # x: teacher env steps
                    writer.add_scalar("teacher/episodic_return", episode_return, i * batch + (t + 1) * E)
                rewards = ro["values"].new_tensor(env_rewards)  # [T, E] the TRUE reward: the teacher's only
                advantages, returns = compute_gae(rewards, ro, args.gamma, args.gae_lambda)  # [T, E] each
                ppo_update(teacher, teacher_optimizer, ro, advantages, returns, args)
            expert_returns, *expert = evaluate(teacher, args.env_id, args.expert_episodes, args.seed + 10_000)
            expert_return = float(expert_returns.mean())  # greedy teacher episodes, starts unseen in eval
            np.savez(os.path.join(run_dir, "expert.npz"), observations=expert[0], actions=expert[1])
        expert_obs, expert_actions = (torch.as_tensor(x).to(device) for x in expert or ([], []))  # [N,O], [N]
        next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32).to(device)  # [E, O]
        for iteration in range(num_iterations):
            for opt, lr in ((optimizer, args.learning_rate), (disc_optimizer, args.disc_learning_rate)):
                opt.param_groups[0]["lr"] = lr * (1.0 - iteration / num_iterations)  # both anneal to 0
            ro, _, episodes, next_obs = collect_rollout(envs, agent, next_obs, args.num_steps)  # _: env r
            for t, episode_return, length in episodes:  # the true return: logged, never learned from
                writer.add_scalar("charts/episodic_return", episode_return, step := global_step + (t + 1) * E)
                writer.add_scalar("charts/episodic_length", length, step)
            global_step += batch
            for _ in range(args.disc_updates):
                e = torch.randint(len(expert_obs), (args.batch_size,), device=device)  # [b] expert indices
                s = torch.randint(batch, (args.batch_size,), device=device)  # [b] student indices
                expert_logits = discriminator(expert_obs[e], expert_actions[e])  # [b, O], [b] -> [b]
                student_logits = discriminator(ro["obs"].flatten(0, 1)[s], ro["actions"].flatten()[s])  # [b]
                disc_loss = discriminator_loss(expert_logits, student_logits)
                disc_optimizer.zero_grad()
                disc_loss.backward()
                disc_optimizer.step()
            with torch.no_grad():
                student_logits = discriminator(ro["obs"], ro["actions"])  # [T, E, O], [T, E] -> [T, E]
                rewards = discriminator_reward(student_logits)  # [T, E]: the student's only reward
                acc_expert = (discriminator(expert_obs, expert_actions) > 0).float().mean().item()  # [N]->()
                acc_student = (student_logits < 0).float().mean().item()  # [T, E] -> ()
            advantages, returns = compute_gae(rewards, ro, args.gamma, args.gae_lambda)  # [T, E] each
            losses = ppo_update(agent, optimizer, ro, advantages, returns, args)
            num_updates += 1
            losses["discriminator_loss"] = disc_loss.item() if args.disc_updates else 0.0
            charts = dict(disc_accuracy_expert=acc_expert, disc_accuracy_student=acc_student)
            charts |= dict(gail_reward=rewards.mean().item(), SPS=global_step / (time.time() - start_time))
            for name, value in [*(("losses/" + k, v) for k, v in losses.items()), *charts.items()]:
                writer.add_scalar(name if "/" in name else "charts/" + name, value, global_step)
            progress.update(batch)
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    envs.close()
    train_seconds = max(time.time() - start_time, 1e-9)
    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
    returns, _, _ = evaluate(agent, args.env_id, args.eval_episodes, args.seed, video_dir)
    if args.save_model:
        torch.save(model.state_dict(), os.path.join(run_dir, "model.pt"))
    summary = {"algo": os.path.basename(__file__)[: -len(".py")], "env_id": args.env_id, "seed": args.seed}
    summary |= {"total_steps": global_step, "num_updates": num_updates, "run_dir": run_dir}
    summary |= {"train_seconds": round(train_seconds, 3), "eval_episodes": args.eval_episodes}
    summary |= {"steps_per_second": round(global_step / train_seconds, 1), "interrupted": interrupted}
    summary |= {"eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std())}
    summary |= {"expert_transitions": 0 if expert is None else len(expert[1]), "expert_return": expert_return}
    summary |= {"disc_accuracy_expert": acc_expert, "disc_accuracy_student": acc_student}
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
