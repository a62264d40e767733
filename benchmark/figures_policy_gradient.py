"""Seconds and steps to threshold for the policy-gradient family, over seeds.

Time to threshold = seconds from process start until the mean of the last 10 training episodes
(`charts/episodic_return`) first reaches 475; each run is a fresh `python algos/<stem>.py`.
Usage: python benchmark/figures_policy_gradient.py ppo_cartpole --seeds 1 2 3 4 5 [--figure docs/figures/pg_ppo_cartpole.png]
       [flags for the algorithm, e.g. --num-steps 250]
The figure shows, per seed, the mean of the last 10 training episodes against environment steps.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from algo_loader import read_scalars

ROOT = Path(__file__).resolve().parents[1]


def episode_returns(run_dir: str) -> list[tuple[int, float, float]]:
    """[(step, wall time, return)] of every training episode."""
    return read_scalars(run_dir, "charts/episodic_return")


def time_to_threshold(returns: list, start: float, threshold: float, window: int) -> tuple:
    for i in range(window - 1, len(returns)):
        if sum(value for _, _, value in returns[i - window + 1 : i + 1]) / window >= threshold:
            return returns[i][0], returns[i][1] - start
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stem")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--figure", help="write the learning curves to this png")
    opts, opts.extra = parser.parse_known_args()  # unknown flags go to the algorithm
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as runs_dir:
        for seed in opts.seeds:
            command = [sys.executable, f"algos/{opts.stem}.py", "--seed", str(seed), "--no-progress",
                       "--runs-dir", runs_dir, *opts.extra]  # fmt: skip
            start = time.time()
            out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
            wall = time.time() - start
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            returns = episode_returns(summary["run_dir"])
            curves[seed] = returns
            steps, seconds = time_to_threshold(returns, start, opts.threshold, opts.window)
            row = {"seed": seed, "eval": summary["eval_return_mean"], "steps_to_threshold": steps,
                   "seconds_to_threshold": None if seconds is None else round(seconds, 2),
                   "total_steps": summary["total_steps"], "steps_per_second": summary["steps_per_second"],
                   "wall_seconds": round(wall, 2)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    for key in ("eval", "steps_to_threshold", "seconds_to_threshold", "steps_per_second", "wall_seconds"):
        values = [row[key] for row in rows]
        reached = [v for v in values if v is not None]
        worst = min(reached) if key == "eval" else max(reached) if reached else None
        if key != "eval" and len(reached) < len(values):
            worst = "not reached"
        median = statistics.median(reached) if reached else None
        print(f"{key}: median {median} worst {worst} (reached {len(reached)}/{len(values)})")
    if opts.figure:
        plot(curves, opts, rows)


def plot(curves: dict, opts, rows: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(6, 3.6))
    for seed, returns in curves.items():
        values = [value for _, _, value in returns]
        smooth = [
            sum(values[max(0, i - opts.window + 1) : i + 1]) / min(i + 1, opts.window)
            for i in range(len(values))
        ]
        plt.plot([step for step, _, _ in returns], smooth, lw=1, label=f"seed {seed}")
    plt.axhline(opts.threshold, color="k", ls="--", lw=0.8)
    plt.xlabel("environment steps")
    plt.ylabel(f"mean of last {opts.window} episodes")
    plt.title(f"{opts.stem} (defaults, {len(rows)} seeds)")
    plt.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(opts.figure, dpi=100)


if __name__ == "__main__":
    main()
