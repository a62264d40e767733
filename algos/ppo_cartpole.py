"""PPO on CartPole-v1: reuse each rollout for several epochs, the policy ratio clipped.

The step from one-step Actor-Critic: the advantage is GAE(lambda), an exponentially weighted mix
of n-step TD errors, and each rollout feeds several epochs of minibatch updates; clipping the
probability ratio pi_new/pi_old to [1 - eps, 1 + eps] keeps those updates near the data's policy.
Paper: https://arxiv.org/abs/1707.06347 (GAE: https://arxiv.org/abs/1506.02438)
Run:  python algos/ppo_cartpole.py
Docs: docs/algorithms/ppo_cartpole.md   Parent: actor_critic_cartpole.py
Shapes: E envs, T steps per rollout, B valid transitions of a rollout (<= T*E), M minibatch,
O observation dim, A actions.
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
from torch import Tensor
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
    # == SHARED: pg_env_args ==
    env_id: str = "CartPole-v1"
    """gymnasium id of an environment with a discrete action space (its own time limit applies)"""
    eval_episodes: int = 10
    """episodes of the final evaluation, each acting with the most probable action"""
    torch_threads: int = 1
    """CPU threads of torch; these small networks gain nothing from more, and lose much on a busy machine"""
    # == ALGO: ppo_cartpole ==
    total_steps: int = 50_000
    """environment steps over all envs (E per vector step), the reset steps included"""
    num_envs: int = 8
    """E, environments stepped side by side; a rollout holds T * E steps"""
    num_steps: int = 32
    """T, steps per environment in each rollout (one rollout, then the update)"""
    hidden_dim: int = 64
    """units in each of the two hidden layers of the actor and of the critic"""
    learning_rate: float = 3e-3
    """Adam step size, annealed linearly to 0 over `total_steps` when `anneal_lr`"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 at `total_steps`"""
    gamma: float = 0.98
    """discount factor; 1 / (1 - gamma) steps is the horizon the returns look ahead"""
    gae_lambda: float = 0.8
    """lambda of GAE: 0 is the one-step TD error, 1 the Monte-Carlo return minus V"""
    update_epochs: int = 8
    """K, passes over each rollout"""
    num_minibatches: int = 1
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


# == SHARED: pg_setup ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written; each file checks the fields it has."""
    try:
        gym.spec(args.env_id)
    except gym.error.Error:
        fail(f"unknown --env-id {args.env_id!r}")
    rules = [
        ("in [0, 1]", lambda v: 0 <= v <= 1, ["gamma", "gae_lambda"]),
        (">= 0", lambda v: v >= 0, ["total_steps", "vf_coef", "ent_coef"]),
        (">= 1", lambda v: v >= 1, ["eval_episodes", "torch_threads", "num_envs", "num_steps", "hidden_dim",
                                    "update_epochs", "num_minibatches"]),
        ("> 0", lambda v: v > 0, ["learning_rate", "clip_coef", "max_grad_norm"]),
    ]  # fmt: skip
    for text, ok, names in rules:
        for name in filter(lambda name: hasattr(args, name), names):
            if not ok(getattr(args, name)):
                fail(f"--{name.replace('_', '-')} must be {text}, got {getattr(args, name)}")


def make_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """E copies of the environment; CartPole has a numpy-vectorised version (2x the steps/s)."""
    # Both kinds autoreset NEXT_STEP: the step after an episode's end only resets (see main).
    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    kwargs = {} if mode == "vector_entry_point" else {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=kwargs)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


class Agent(nn.Module):
    """Actor pi(a|s) as logits and critic V(s), two separate tanh MLPs."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_dim: int):
        super().__init__()

        def mlp(out_dim: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(obs_dim, hidden_dim), nn.Tanh(),
                nn.Linear(hidden_dim, hidden_dim), nn.Tanh(),
                nn.Linear(hidden_dim, out_dim),
            )  # fmt: skip

        self.actor = mlp(num_actions)
        self.critic = mlp(1)

    def forward(self, obs: Tensor) -> tuple[Categorical, Tensor]:
        logits = self.actor(obs)  # [..., O] -> [..., A]
        return Categorical(logits=logits, validate_args=False), self.critic(obs).squeeze(-1)  # [...]


# == ALGO: ppo_cartpole ==
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


def update(agent: Agent, optimizer: torch.optim.Optimizer, batch: dict, args: Args) -> dict:
    """PPO-clip: K epochs of minibatch steps on the rollout's valid transitions."""
    advantages = compute_gae(
        batch["rewards"], batch["values"], batch["terminations"], batch["dones"], args.gamma, args.gae_lambda
    )  # [T, E]
    returns = advantages + batch["values"][:-1]  # [T, E] lambda-returns, the critic's target
    valid = batch["valid"].flatten()  # [T*E]
    obs = batch["obs"].flatten(0, 1)[valid]  # [T, E, O] -> [B, O]
    actions, old_logprobs = batch["actions"].flatten()[valid], batch["logprobs"].flatten()[valid]  # [B]
    advantages, returns = advantages.flatten()[valid], returns.flatten()[valid]  # [B]
    minibatch_size = -(-len(actions) // args.num_minibatches)  # ceil(B / num_minibatches)
    for _ in range(args.update_epochs):
        for mb in torch.randperm(len(actions)).split(minibatch_size):  # [M] indices
            dist, values = agent(obs[mb])  # [M, O] -> [M, A] logits, [M]
            ratio = (dist.log_prob(actions[mb]) - old_logprobs[mb]).exp()  # [M] pi_new / pi_old
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
    with torch.no_grad():
        clip_fraction = ((ratio - 1.0).abs() > args.clip_coef).float().mean()
    return {"loss": loss.detach(), "policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
            "entropy": entropy.detach(), "clip_fraction": clip_fraction}  # fmt: skip


# == SHARED: pg_main ==
def evaluate(agent: Agent, args: Args, run_dir: str, device: torch.device) -> np.ndarray:
    """Episodes with the most probable action, on a fresh environment seeded from `args.seed`."""
    env = gym.make(args.env_id, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(
            env, f"{run_dir}/videos", episode_trigger=lambda e: True, disable_logger=True
        )
    returns = np.zeros(args.eval_episodes)  # [episodes]
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        done = False
        while not done:
            with torch.no_grad():
                logits = agent.actor(torch.as_tensor(obs, device=device))  # [O] -> [A]
            obs, reward, terminated, truncated, _ = env.step(int(logits.argmax()))
            returns[episode] += reward
            done = terminated or truncated
    env.close()
    return returns


def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    envs = make_env(args.env_id, args.num_envs)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        fail(f"--env-id {args.env_id} has no discrete action space")
    obs_dim, num_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
    agent = Agent(obs_dim, num_actions, args.hidden_dim).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, fused=True)
    if args.load_model:
        try:
            agent.load_state_dict(torch.load(args.load_model, map_location=device, weights_only=True))
        except Exception as error:  # missing, corrupt, or another architecture
            fail(f"cannot load --load-model {args.load_model!r}: {' '.join(str(error).split())[:200]}")
    run_dir, writer = start_run(args, args.env_id)
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    interrupted, start_time, global_step, num_updates = False, time.time(), 0, 0
    T, E = args.num_steps, args.num_envs
    obs_buf = np.zeros((T + 1, E, obs_dim), dtype=np.float32)  # [T+1, E, O] s_0 .. s_T
    actions_buf = np.zeros((T, E), dtype=np.int64)  # [T, E]
    rewards_buf, terminations_buf, dones_buf = np.zeros((3, T, E), dtype=np.float32)  # [T, E] each
    valid_buf = np.zeros((T, E), dtype=bool)  # [T, E] False on a step that only resets its env
    next_obs, _ = envs.reset(seed=args.seed)  # [E, O]
    next_done = np.zeros(E, dtype=bool)  # [E]
    try:
        while global_step < args.total_steps:
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - global_step / args.total_steps)
            for step in range(T):
                # NEXT_STEP autoreset: the step after an episode's end only resets the env (reward 0,
                # action ignored). It joins two episodes, so it is marked invalid and never trained on.
                obs_buf[step], valid_buf[step] = next_obs, ~next_done
                with torch.no_grad():
                    logits = agent.actor(torch.from_numpy(next_obs).to(device))  # [E, O] -> [E, A]
                actions = Categorical(logits=logits, validate_args=False).sample()  # [E] a ~ pi(.|s)
                actions_buf[step] = actions.cpu().numpy()
                next_obs, reward, terminated, truncated, infos = envs.step(actions_buf[step])
                next_done = terminated | truncated  # [E] ended for any reason; next_obs is then final
                rewards_buf[step], terminations_buf[step], dones_buf[step] = reward, terminated, next_done
                global_step += E
                if "_episode" in infos:
                    for i in np.flatnonzero(infos["_episode"]):
                        writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                        writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
                        progress.set_postfix(episodic_return=f"{infos['episode']['r'][i]:.0f}")
            obs_buf[T] = next_obs
            batch = {"obs": obs_buf, "actions": actions_buf, "rewards": rewards_buf,
                     "terminations": terminations_buf, "dones": dones_buf, "valid": valid_buf}  # fmt: skip
            batch = {name: torch.from_numpy(array).to(device) for name, array in batch.items()}
            with torch.no_grad():  # values[t + 1] is V(final obs) where step t ended an episode
                dist, batch["values"] = agent(batch["obs"])  # [T+1, E, O] -> [T+1, E, A], [T+1, E]
            log_pi = dist.logits[:T].gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)  # [T, E]
            batch["obs"], batch["logprobs"] = batch["obs"][:T], log_pi  # [T, E, O], [T, E] log pi(a|s)
            losses = update(agent, optimizer, batch, args)
            num_updates += 1
            if not torch.isfinite(losses["loss"]):
                fail(f"loss is {losses['loss'].item()} at step {global_step}")
            for name, value in losses.items():
                writer.add_scalar(f"losses/{name}", value.item(), global_step)
            writer.add_scalar("charts/SPS", global_step / (time.time() - start_time), global_step)
            progress.update(T * E)
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    envs.close()
    train_seconds = time.time() - start_time
    returns = evaluate(agent, args, run_dir, device)
    if args.save_model:
        torch.save(agent.state_dict(), os.path.join(run_dir, "model.pt"))
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
    }
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
