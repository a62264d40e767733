"""Figure and per-seed table for the continuous-control pages: DDPG and SAC on Pendulum-v1.

Trains each file with its defaults for seeds 1..N (one subprocess at a time, under `nice`), or
with --no-train reads runs already in --runs-dir; then reads every run's `summary.json` and its
`charts/episodic_return` events and writes docs/figures/continuous_pendulum.png (training
episode return against environment steps, median and range over seeds, the -200 threshold).
Prints the markdown table the docs quote: evaluation return, and the environment step at
which the mean of the last 10 training episodes first reaches -200.

    python benchmark/figures_continuous.py --seeds 5 --runs-dir benchmark/out/continuous_runs
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from algo_loader import read_scalars  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEMS = {"ddpg_pendulum": "DDPG", "sac_pendulum": "SAC"}
THRESHOLD = -200.0


def episodes(run_dir: str) -> list[tuple[int, float]]:
    return [(step, value) for step, _, value in read_scalars(run_dir, "charts/episodic_return")]


def steps_to_threshold(eps: list[tuple[int, float]]) -> int | None:
    """First step at which the mean of the last 10 training episodes reaches the threshold."""
    for i in range(9, len(eps)):
        if np.mean([r for _, r in eps[i - 9 : i + 1]]) >= THRESHOLD:
            return eps[i][0]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--runs-dir", default="benchmark/out/continuous_runs")
    parser.add_argument("--no-train", action="store_true", help="only read runs already in --runs-dir")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "continuous_pendulum.png"))
    args = parser.parse_args()
    if not args.no_train:
        for stem in STEMS:
            for seed in range(1, args.seeds + 1):
                cmd = ["nice", "-n", "10", sys.executable, f"algos/{stem}.py", "--seed", str(seed)]
                subprocess.run([*cmd, "--no-progress", "--runs-dir", args.runs_dir], cwd=ROOT, check=True)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    print("| file | seed | eval return (50 episodes) | steps to -200 (last-10 mean) | train seconds |")
    print("| --- | --- | --- | --- | --- |")
    for (stem, label), color in zip(STEMS.items(), ("tab:blue", "tab:orange")):
        runs = sorted(glob.glob(os.path.join(args.runs_dir, f"*__{stem}__*")))
        summaries = [json.load(open(os.path.join(r, "summary.json"))) for r in runs]
        summaries = [s for s in summaries if s["seed"] <= args.seeds]
        grid, curves, evals, reached = np.arange(200, 20001, 200), [], [], []
        for summary in sorted(summaries, key=lambda s: s["seed"]):
            eps = episodes(summary["run_dir"])
            steps, returns = np.array([s for s, _ in eps]), np.array([r for _, r in eps])
            curves.append(np.interp(grid, steps, returns))
            step = steps_to_threshold(eps)
            evals.append(summary["eval_return_mean"])
            reached.append(step if step is not None else float("inf"))
            print(
                f"| {stem} | {summary['seed']} | {summary['eval_return_mean']:.1f} | {step} | "
                f"{summary['train_seconds']:.0f} |"
            )
        if not curves:
            continue
        print(
            f"| {stem} | median / worst | {statistics.median(evals):.1f} / {min(evals):.1f} | "
            f"{statistics.median(reached):.0f} / {max(reached):.0f} | |"
        )
        curves = np.array(curves)
        ax.plot(
            grid, np.median(curves, axis=0), color=color, label=f"{label} (median of {len(curves)} seeds)"
        )
        ax.fill_between(grid, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2)
    ax.axhline(THRESHOLD, color="gray", linestyle="--", linewidth=1, label="threshold -200")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return")
    ax.set_title("Pendulum-v1, defaults")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
