"""Thompson sampling on a K-armed Bernoulli bandit.

Keep a Beta posterior over each arm's success probability, draw one sample per arm and pull
the arm whose sample is largest: each arm is pulled with the posterior probability that it is
the best. Successes S = Q N and failures N - S follow from the shared sample-mean estimates.
Reference: Russo et al., A Tutorial on Thompson Sampling (2018), https://arxiv.org/abs/1707.02038
Run:  python algos/bandit_thompson_sampling.py --prior-alpha 1 --prior-beta 1
Docs: docs/algorithms/bandit_thompson_sampling.md   Parent: bandit_epsilon_greedy.py
Shapes: R independent bandits (runs), K arms, T pulls.
"""

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import NoReturn, Optional

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
    # == ENV: bernoulli_bandit ==
    env_id: str = "BernoulliBandit-v0"
    """name of the bandit in run directories; the bandit itself is built in this file"""
    num_arms: int = 10
    """K, arms per bandit; arm k pays 1 with probability p_k ~ Uniform(0, 1) drawn from the seed"""
    num_runs: int = 200
    """R, independent bandits played side by side; regret is the mean over them"""
    total_steps: int = 5000
    """T, pulls per bandit"""
    eval_episodes: int = 100
    """greedy pulls per bandit in the final evaluation (arm with the highest estimate)"""
    save_plot: bool = False
    """write the regret curve to `<run dir>/regret.png`"""
    # == ALGO: bandit_thompson_sampling ==
    prior_alpha: float = 1.0
    """alpha_0 of the Beta(alpha_0, beta_0) prior on every p_k: prior successes; 1 with beta_0 = 1 is uniform"""
    prior_beta: float = 1.0
    """beta_0 of the Beta(alpha_0, beta_0) prior on every p_k: prior failures"""


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


# == SHARED: bandit_checks ==
def check_args(args: Args) -> None:
    """Reject values the run cannot use, before anything is written."""
    if args.num_arms < 2:
        fail(f"--num-arms must be >= 2, got {args.num_arms}")
    if args.num_runs < 1:
        fail(f"--num-runs must be >= 1, got {args.num_runs}")
    if args.total_steps < 0:
        fail(f"--total-steps must be >= 0, got {args.total_steps}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1, got {args.eval_episodes}")
    if args.env_id != "BernoulliBandit-v0":
        fail(f"unknown --env-id {args.env_id!r}: this file builds only BernoulliBandit-v0")
    check_algo_args(args)


def load_estimates(path: str, num_runs: int, num_arms: int) -> tuple[np.ndarray, np.ndarray]:
    """Read saved estimates Q and counts N ([R, K] each) from an `.npz` file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            q, n = data["q"], data["n"]
    except Exception as error:  # missing, not an npz, missing keys
        fail(f"cannot load --load-model {path!r}: {error}")
    if q.shape != (num_runs, num_arms) or n.shape != (num_runs, num_arms):
        fail(f"--load-model {path!r} holds shape {q.shape}, expected {(num_runs, num_arms)}")
    return q.astype(np.float64), n.astype(np.float64)


# == ALGO: bandit_thompson_sampling ==
def check_algo_args(args: Args) -> None:
    if not (np.isfinite(args.prior_alpha) and args.prior_alpha > 0.0):
        fail(f"--prior-alpha must be finite and > 0, got {args.prior_alpha}")
    if not (np.isfinite(args.prior_beta) and args.prior_beta > 0.0):
        fail(f"--prior-beta must be finite and > 0, got {args.prior_beta}")


def choose_arm(q: np.ndarray, n: np.ndarray, t: int, rng: np.random.Generator, args: Args) -> np.ndarray:
    """Thompson: theta[r, k] ~ Beta(alpha_0 + S, beta_0 + N - S), pull argmax_k theta[r, k]."""
    successes = np.rint(q * n)  # [R, K] rewards are 0/1, so Q N counts the successes exactly
    theta = rng.beta(args.prior_alpha + successes, args.prior_beta + n - successes)  # [R, K]
    return theta.argmax(axis=1)  # [R, K] -> [R]


# == SHARED: bandit_main ==
def evaluate(q: np.ndarray, probs: np.ndarray, eval_episodes: int, rng: np.random.Generator) -> np.ndarray:
    """Pull each bandit's greedy arm `eval_episodes` times; returns the mean reward per bandit [R]."""
    greedy_p = np.take_along_axis(probs, q.argmax(axis=1)[:, None], axis=1)[:, 0]  # [R]
    return (rng.random((eval_episodes, len(greedy_p))) < greedy_p).mean(axis=0)  # [R]


def main(args: Args) -> dict:
    check_args(args)
    seed_everything(args.seed, args.torch_deterministic)
    rng = np.random.default_rng(args.seed)
    probs = rng.uniform(size=(args.num_runs, args.num_arms))  # [R, K] success probability of each arm
    q = np.zeros((args.num_runs, args.num_arms))  # [R, K] estimated mean reward Q
    n = np.zeros((args.num_runs, args.num_arms))  # [R, K] pulls N
    if args.load_model:
        q, n = load_estimates(args.load_model, args.num_runs, args.num_arms)
    run_dir, writer = start_run(args, args.env_id)
    runs = np.arange(args.num_runs)
    best_p = probs.max(axis=1)  # [R]
    regret = np.zeros(args.num_runs)  # [R] expected regret so far: sum_t p_best - p_{a_t}
    regret_curve = np.zeros(args.total_steps)  # [T] mean over runs
    total_reward = np.zeros(args.num_runs)  # [R]
    interrupted, start_time, t = False, time.time(), 0
    progress = tqdm(total=args.total_steps, disable=not (args.progress and sys.stderr.isatty()))
    try:
        for t in range(args.total_steps):
            arms = choose_arm(q, n, t, rng, args)  # [R]
            p = probs[runs, arms]  # [R]
            rewards = (rng.random(args.num_runs) < p).astype(np.float64)  # [R] Bernoulli(p)
            n[runs, arms] += 1
            q[runs, arms] += (rewards - q[runs, arms]) / n[runs, arms]  # incremental mean
            regret += best_p - p
            total_reward += rewards
            regret_curve[t] = regret.mean()
            if (t + 1) % 100 == 0 or t + 1 == args.total_steps:
                writer.add_scalar("charts/regret", regret_curve[t], t + 1)
                writer.add_scalar("charts/mean_reward", total_reward.mean() / (t + 1), t + 1)
                writer.add_scalar("charts/best_arm_found", (q.argmax(1) == probs.argmax(1)).mean(), t + 1)
                progress.update(100 if (t + 1) % 100 == 0 else (t + 1) % 100)
                progress.set_postfix(regret=f"{regret_curve[t]:.1f}")
        t = args.total_steps
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    train_seconds = time.time() - start_time
    writer.add_scalar("charts/SPS", t * args.num_runs / max(train_seconds, 1e-9), t)
    returns = evaluate(q, probs, args.eval_episodes, np.random.default_rng(args.seed + 1))
    if args.save_model:
        np.savez(os.path.join(run_dir, "model.npz"), q=q, n=n)
    if args.save_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.figure(figsize=(5, 3.5))
        plt.plot(np.arange(1, t + 1), regret_curve[:t])
        plt.xlabel("pulls")
        plt.ylabel(f"expected regret (mean of {args.num_runs} runs)")
        plt.title(args.exp_name)
        plt.tight_layout()
        plt.savefig(os.path.join(run_dir, "regret.png"), dpi=100)
        plt.close()
    summary = {
        "algo": os.path.basename(__file__)[: -len(".py")],
        "env_id": args.env_id,
        "seed": args.seed,
        "total_steps": t,
        "num_updates": int(t * args.num_runs),
        "train_seconds": round(train_seconds, 3),
        "steps_per_second": round(t * args.num_runs / max(train_seconds, 1e-9), 1),
        "eval_episodes": args.eval_episodes,
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "interrupted": interrupted,
        "run_dir": run_dir,
        "regret": float(regret.mean()),
        "regret_std": float(regret.std()),
        "total_reward": float(total_reward.mean()),
        "best_arm_expected_reward": float(best_p.mean()),
    }
    return finish_run(summary, writer, args.track)


if __name__ == "__main__":
    main(tyro.cli(Args))
