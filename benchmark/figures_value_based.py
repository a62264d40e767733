"""Figure for the value-based docs: mean max_a Q(s, a) over training, DQN vs Double DQN on Pendulum.

Reads the `charts/max_q` and `charts/episodic_return` TensorBoard scalars of finished runs of
algos/dqn_pendulum.py and algos/ddqn_pendulum.py (trains them first unless --no-train), and
writes docs/figures/dqn_max_q.png.

    python benchmark/figures_value_based.py --seeds 1 2 3 --runs-dir benchmark/out/value_based_runs
"""

import argparse
import glob
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from algo_loader import read_scalars  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEMS = {"dqn_pendulum": "DQN", "ddqn_pendulum": "Double DQN"}


def scalars(run_dir: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
    points = read_scalars(run_dir, tag)
    return np.array([step for step, _, _ in points]), np.array([value for _, _, value in points])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--total-steps", type=int, default=20000)
    parser.add_argument("--runs-dir", default="benchmark/out/value_based_runs")
    parser.add_argument("--no-train", action="store_true", help="only read runs already in --runs-dir")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "figures", "dqn_max_q.png"))
    args = parser.parse_args()
    if not args.no_train:
        for stem in STEMS:
            for seed in args.seeds:
                command = [sys.executable, os.path.join(ROOT, "algos", f"{stem}.py"), "--seed", str(seed)]
                command += [
                    "--total-steps",
                    str(args.total_steps),
                    "--runs-dir",
                    args.runs_dir,
                    "--no-progress",
                ]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    fig, (ax_q, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (stem, label), color in zip(STEMS.items(), ["tab:red", "tab:blue"]):
        runs = []
        for seed in args.seeds:
            found = sorted(glob.glob(os.path.join(args.runs_dir, f"Pendulum-v1__{stem}__{seed}__*")))
            if found:
                runs.append(found[-1])  # the newest run of this seed
        if not runs:
            sys.exit(f"no runs of {stem} in {args.runs_dir}")
        for ax, tag in ((ax_q, "charts/max_q"), (ax_r, "charts/episodic_return")):
            curves = [scalars(run, tag) for run in runs]
            if tag == "charts/episodic_return":  # the benchmark's statistic: mean of the last 10 episodes
                curves = [(st[9:], np.convolve(va, np.ones(10) / 10, mode="valid")) for st, va in curves]
            grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), 100)
            values = np.array([np.interp(grid, steps, vals) for steps, vals in curves])  # [runs, 100]
            ax.plot(
                grid, np.median(values, axis=0), color=color, label=f"{label} (median of {len(runs)} seeds)"
            )
            ax.fill_between(grid, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)
    ax_q.set(xlabel="environment steps", ylabel="mean over batch of max_a Q(s, a)", title="Q estimates")
    ax_r.set(
        xlabel="environment steps", ylabel="mean of the last 10 training returns", title="learning curve"
    )
    ax_r.axhline(-200, color="gray", linestyle="--", linewidth=1)
    ax_q.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} from {args.runs_dir}")


if __name__ == "__main__":
    main()
