"""Numbers and a figure for the n-step SARSA and expected SARSA pages, on CliffWalking-v1.

Runs each file with its defaults for seeds 1..N (in-process, one at a time) and reads the training
episode returns from the TensorBoard events. Prints two tables the docs quote:

- n-step SARSA with n = 1, 2 (the default), 3, 5: env steps until the greedy path first reaches the goal with a
  return of at least -17 (`--target-return -17`), and the greedy return at the end;
- expected SARSA beside SARSA and Q-learning: the greedy return at the end, and the online return
  (behaviour policy, exploration included) averaged over the training episodes that end in the
  second half of the run, as in Sutton & Barto's figure 6.4.

Writes docs/figures/td_cliff_extra.png: the online returns of the first episodes (mean over seeds).

    python benchmark/figures_tabular_td_extra.py --seeds 5
"""

import argparse
import contextlib
import io
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from algo_loader import load_algo, read_scalars  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_VALUES = (1, 2, 3, 5)
ONLINE = {"cliff_q_learning": "Q-learning", "cliff_sarsa": "SARSA", "cliff_expected_sarsa": "expected SARSA"}


def run(stem: str, seed: int, runs_dir: str, **fields) -> tuple[dict, np.ndarray, np.ndarray]:
    """Train with the defaults (and `fields`); returns the summary, the env step at which each training
    episode ended, and its return."""
    module = load_algo(stem)
    args = module.Args(seed=seed, runs_dir=runs_dir, progress=False, **fields)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = module.main(args)
    points = read_scalars(summary["run_dir"], "charts/episodic_return")
    steps = np.array([step for step, _, _ in points])
    returns = np.array([value for _, _, value in points])
    return summary, steps, returns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N per configuration")
    parser.add_argument("--episodes", type=int, default=500, help="episodes shown on the curves")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "td_cliff_extra.png"))
    cli = parser.parse_args()
    seeds = range(1, cli.seeds + 1)
    curves = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        print("| n | seed | env steps to a greedy return >= -17 | greedy return at the end | path length |")
        print("| --- | --- | --- | --- | --- |")
        summaries = {}
        for n in N_VALUES:
            per_seed = []
            for seed in seeds:
                s, _, _ = run("cliff_n_step_sarsa", seed, runs_dir, n=n, target_return=-17.0)
                per_seed.append(s)
                print(
                    f"| {n} | {seed} | {s['steps_to_target']} | {s['eval_return_mean']:g} | {s['path_length']} |"
                )
            summaries[n] = per_seed
        for n, per_seed in summaries.items():
            steps = [s["steps_to_target"] for s in per_seed if s["steps_to_target"] is not None]
            evals = [s["eval_return_mean"] for s in per_seed]
            print(
                f"n = {n}: steps to -17 median {statistics.median(steps) if steps else None}, "
                f"worst {max(steps) if steps else None} ({len(steps)}/{len(per_seed)} seeds); "
                f"greedy return at the end median {statistics.median(evals):g}, worst {min(evals):g}"
            )

        print()
        print("| algorithm | seed | greedy return | path length | online return, 2nd half | episodes |")
        print("| --- | --- | --- | --- | --- | --- |")
        online = {stem: [] for stem in ONLINE}
        for stem, label in ONLINE.items():
            per_seed = []
            for seed in seeds:
                s, steps, returns = run(stem, seed, runs_dir)
                late = returns[steps > s["total_steps"] // 2].mean()
                online[stem].append(late)
                per_seed.append(returns)
                print(
                    f"| {label} | {seed} | {s['eval_return_mean']:g} | {s['path_length']} | {late:.1f} "
                    f"| {s['episodes']} |"
                )
            length = min(len(r) for r in per_seed)
            curves[stem] = np.mean([r[:length] for r in per_seed], axis=0)
        for stem, label in ONLINE.items():
            print(
                f"{label}: online return in the 2nd half, mean over seeds {np.mean(online[stem]):.1f}, "
                f"worst seed {min(online[stem]):.1f}, best {max(online[stem]):.1f}"
            )

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    window = 10
    for stem, label in ONLINE.items():
        smooth = np.convolve(curves[stem], np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, window + len(smooth)), smooth, label=label)
    ax.set_xlim(0, cli.episodes)
    ax.set_ylim(-120, 0)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"online episode return (mean of {cli.seeds} seeds)")
    ax.set_title(f"CliffWalking-v1, epsilon = 0.1, alpha = 0.1, moving average of {window} episodes")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(cli.out, dpi=110)
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    main()
