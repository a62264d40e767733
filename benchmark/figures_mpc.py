"""PETS-style MPC on Pendulum-v1: the return of every training episode, several seeds.

Runs `algos/mpc_pendulum.py` with its defaults (2000 env steps = 10 episodes, the first random)
for seeds 1..N, one subprocess at a time under `nice`, or with --no-train reads the runs already in
--runs-dir. Writes docs/figures/mpc_pendulum_returns.png (training episode returns per seed and
the -200 target) and prints the markdown table the docs quote (evaluation return over the
evaluation's own start states, first episode at or above -200, planning time per action) with the
median and the worst seed.

    python benchmark/figures_mpc.py --seeds 10 --runs-dir benchmark/out/mpc_runs
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
from algo_loader import read_scalars  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = -200.0


def episode_returns(run_dir: str) -> list[float]:
    return [value for _, _, value in read_scalars(run_dir, "charts/episodic_return")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--runs-dir", default="benchmark/out/mpc_runs")
    parser.add_argument("--no-train", action="store_true", help="only read runs already in --runs-dir")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "mpc_pendulum_returns.png"))
    args = parser.parse_args()
    if not args.no_train:
        for seed in range(1, args.seeds + 1):
            cmd = ["nice", "-n", "10", sys.executable, "algos/mpc_pendulum.py", "--seed", str(seed)]
            cmd += ["--no-progress", "--runs-dir", args.runs_dir]
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    paths = sorted(glob.glob(os.path.join(args.runs_dir, "*", "summary.json")))
    runs = sorted((json.load(open(p)) for p in paths), key=lambda s: s["seed"])
    print(
        "| seed | eval return (mean ± std of episodes) | first training episode >= -200 | planning ms/action |"
    )
    print("| --- | --- | --- | --- |")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for summary in runs:
        returns = episode_returns(summary["run_dir"])
        first = next((i + 1 for i, r in enumerate(returns) if r >= TARGET), None)
        print(
            f"| {summary['seed']} | {summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f} "
            f"| {first or 'never'} | {summary['planning_ms_per_action']:.0f} |"
        )
        ax.plot(
            range(1, len(returns) + 1), returns, marker="o", markersize=3, label=f"seed {summary['seed']}"
        )
    values = [s["eval_return_mean"] for s in runs]
    print(f"\nmedian {statistics.median(values):.1f}, worst {min(values):.1f} over {len(values)} seeds")
    ax.axhline(TARGET, color="black", linestyle=":", label="target -200")
    ax.axvline(1.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("training episode (200 env steps; episode 1 is random)")
    ax.set_ylabel("episode return")
    ax.set_title("mpc_pendulum.py, Pendulum-v1, defaults")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
