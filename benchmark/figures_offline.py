"""CQL against plain offline SAC (`--cql-alpha 0`) on the same dataset, several seeds, with their over-estimation.

Builds one dataset with `algos/cql_pendulum.py --total-steps 0 --save-buffer` (its own online SAC, seed 1:
`--kind replay`, the whole replay buffer, or `--kind policy`, the final policy with small noise), trains CQL
with its defaults and with `--cql-alpha 0` on it for seeds 1..N (one subprocess at a time, under `nice`), or
with --no-train reads the runs already in --runs-dir. For each run it also measures over-estimation: the
critic's min_i Q_i(s0, mu(s0)) at the evaluation's start states against the discounted return mu then
collects from s0 (one 200-step episode each). Writes docs/figures/offline_cql_vs_sac[_policy].png and prints
the markdown table the docs quote.

    python benchmark/figures_offline.py --seeds 3 --runs-dir runs/offline
    python benchmark/figures_offline.py --kind policy --seeds 6 --runs-dir runs/offline_policy \\
        --data-args "--dataset-steps 10000 --buffer-size 10000" \\
        --train-args "--total-steps 10000 --eval-episodes 50" --cql-args "--cql-alpha 50"
"""

import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from algo_loader import load_algo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = -250.0


def run(argv: list[str], runs_dir: str) -> None:
    cmd = ["nice", "-n", "10", sys.executable, "algos/cql_pendulum.py", *argv, "--no-progress"]
    subprocess.run([*cmd, "--runs-dir", runs_dir], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def summaries(runs_dir: str) -> list[dict]:
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(runs_dir, "*", "summary.json")))]


def overestimation(summary: dict) -> tuple[float, float]:
    """Mean min_i Q_i(s0, mu(s0)) and mean discounted return from s0, on the evaluation's start states."""
    cql = load_algo("cql_pendulum")
    saved = json.load(open(os.path.join(summary["run_dir"], "args.json")))
    args = cql.Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    env = cql.make_env(args)
    actor, critic, *_ = cql.make_agent(args, env, torch.device("cpu"))
    state = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=True)
    actor.load_state_dict(state["actor"])
    critic.load_state_dict(state["critic"])
    seeds, q_start, discounted = np.random.default_rng([args.seed, 1]), [], []
    for _ in range(args.eval_episodes):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        total, discount, done = 0.0, 1.0, False
        while not done:
            obs_t = torch.as_tensor(obs)[None]
            action = actor.act(obs_t, deterministic=True)
            if discount == 1.0:
                with torch.no_grad():
                    q_start.append(critic(obs_t, action).min().item())
            obs, reward, terminated, truncated, _ = env.step(action[0].numpy())
            total, discount, done = total + discount * reward, discount * args.gamma, terminated or truncated
        discounted.append(total)
    return float(np.mean(q_start)), float(np.mean(discounted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kind", choices=["replay", "policy"], default="replay")
    parser.add_argument("--runs-dir", default="runs/offline")
    parser.add_argument("--data-args", default="", help="extra arguments of the dataset-building run")
    parser.add_argument("--train-args", default="", help="extra arguments of every offline run")
    parser.add_argument("--cql-args", default="", help="extra arguments of the CQL runs only")
    parser.add_argument("--no-train", action="store_true", help="only read runs already in --runs-dir")
    args = parser.parse_args()
    suffix = "" if args.kind == "replay" else f"_{args.kind}"
    out = ROOT / "docs" / "figures" / f"offline_cql_vs_sac{suffix}.png"
    variants = {f"CQL ({args.cql_args or 'defaults'})": shlex.split(args.cql_args)}
    variants["offline SAC (--cql-alpha 0)"] = ["--cql-alpha", "0"]
    dataset_dir = os.path.join(args.runs_dir, "dataset")
    if not args.no_train:
        data_argv = ["--dataset-kind", args.kind, "--total-steps", "0", "--save-buffer"]
        run([*data_argv, *shlex.split(args.data_args)], dataset_dir)
    dataset = glob.glob(os.path.join(dataset_dir, "*", "buffer.npz"))[0]
    results = {}
    for i, (name, extra) in enumerate(variants.items()):
        runs_dir = os.path.join(args.runs_dir, f"variant{i}")
        if not args.no_train:
            for seed in range(1, args.seeds + 1):
                argv = ["--dataset", dataset, "--seed", str(seed), "--save-model", *extra]
                run([*argv, *shlex.split(args.train_args)], runs_dir)
        results[name] = sorted(summaries(runs_dir), key=lambda s: s["seed"])
    data_return = next(iter(results.values()))[0]["dataset_return"]
    print(f"dataset ({args.kind}): {next(iter(results.values()))[0]['dataset_size']} transitions, ", end="")
    print(f"average episode return {data_return:.1f}\n")
    print("| variant | seed | eval return | Q(s0, mu(s0)) | discounted return from s0 |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        for s in runs:
            q, g = overestimation(s)
            print(f"| {name} | {s['seed']} | {s['eval_return_mean']:.1f} | {q:.1f} | {g:.1f} |")
        median = statistics.median(s["eval_return_mean"] for s in runs)
        print(f"| {name} | median | {median:.1f} | | |")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / len(results)
    for i, (name, runs) in enumerate(results.items()):
        xs = [s["seed"] + (i - (len(results) - 1) / 2) * width for s in runs]
        ax.bar(xs, [s["eval_return_mean"] for s in runs], width, label=name)
    ax.axhline(data_return, color="grey", linestyle="--", label="dataset average episode return")
    ax.axhline(TARGET, color="black", linestyle=":", label="target -250")
    ax.set_xlabel("seed")
    ax.set_ylabel(f"evaluation return ({runs[0]['eval_episodes']} episodes)")
    ax.set_title(f"Pendulum-v1, one {args.kind} dataset")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
