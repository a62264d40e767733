"""Figures and numbers for the tabular TD pages: SARSA, Q-learning and Dyna-Q on CliffWalking-v1.

Runs each file with its defaults for seeds 1..N (in-process, one at a time), reads the episode
returns from the TensorBoard events, and writes docs/figures/td_cliff.png: the three learning
curves (episode return against episodes, mean over seeds) and the greedy paths of SARSA and
Q-learning (seed 1). Prints the per-seed table the docs quote.

    python benchmark/figures_tabular_td.py --seeds 10
"""

import argparse
import contextlib
import io
import os
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from algo_loader import load_algo, read_scalars  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEMS = {"cliff_sarsa": "SARSA", "cliff_q_learning": "Q-learning", "dyna_q": "Dyna-Q (10 planning steps)"}
# each file's defaults: 30 000 real steps for SARSA and Q-learning, 5 000 for Dyna-Q (its curve is shorter)


def run(module, seed: int, runs_dir: str) -> tuple[dict, np.ndarray, np.ndarray, str]:
    """Train with the defaults; returns the summary, the episode returns, the Q table and what it printed."""
    args = module.Args(seed=seed, runs_dir=runs_dir, progress=False, save_model=True)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = module.main(args)
    returns = np.array([value for _, _, value in read_scalars(summary["run_dir"], "charts/episodic_return")])
    q = np.load(os.path.join(summary["run_dir"], "model.npz"))["q"]
    return summary, returns, q, stdout.getvalue()


def path_cells(module, q: np.ndarray) -> np.ndarray:
    """(row, col) of the greedy path from the start, traced with the file's own greedy_path."""
    env = module.make_env(module.Args())
    start, _ = env.reset(seed=0)
    path, _, _ = module.greedy_path(q, env.unwrapped.P, start)
    return np.array([divmod(s, 12) for s in path])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10, help="seeds 1..N per algorithm")
    parser.add_argument("--episodes", type=int, default=500, help="episodes shown on the learning curves")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "td_cliff.png"))
    cli = parser.parse_args()
    curves, tables, rows = {}, {}, []
    with tempfile.TemporaryDirectory() as runs_dir:
        for stem, label in STEMS.items():
            module = load_algo(stem)
            per_seed = []
            for seed in range(1, cli.seeds + 1):
                summary, returns, q, printed = run(module, seed, runs_dir)
                per_seed.append(returns)
                rows.append((label, seed, summary))
                if seed == 1:
                    tables[stem] = (module, q)
                    print(f"{label}, seed 1: {printed.strip().splitlines()[-2]}")  # the greedy path line
            length = min(len(r) for r in per_seed)
            curves[stem] = np.mean([r[:length] for r in per_seed], axis=0)

    print("| algorithm | seed | eval return | path length | real steps to the optimal path | episodes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, seed, s in rows:
        print(
            f"| {label} | {seed} | {s['eval_return_mean']:g} | {s['path_length']} | {s['steps_to_target']} | {s['episodes']} |"
        )
    for label in STEMS.values():
        got = [s for name, _, s in rows if name == label]
        steps = [s["steps_to_target"] for s in got if s["steps_to_target"] is not None]
        evals = [s["eval_return_mean"] for s in got]
        print(
            f"{label}: eval return median {statistics.median(evals):g}, worst {min(evals):g}; "
            f"steps to the optimal path median {statistics.median(steps) if steps else None}, "
            f"worst {max(steps) if steps else None} ({len(steps)}/{len(got)} seeds reach it)"
        )

    fig, (ax_curve, ax_path) = plt.subplots(2, 1, figsize=(7.5, 7.5), gridspec_kw={"height_ratios": [3, 2]})
    window = 10
    for stem, label in STEMS.items():
        smooth = np.convolve(curves[stem], np.ones(window) / window, mode="valid")
        ax_curve.plot(np.arange(window, window + len(smooth)), smooth, label=label)
    ax_curve.set_xlim(0, cli.episodes)
    ax_curve.set_ylim(-120, 0)
    ax_curve.set_xlabel("episode")
    ax_curve.set_ylabel(f"episode return (mean of {cli.seeds} seeds)")
    ax_curve.set_title(f"CliffWalking-v1, epsilon-greedy behaviour, moving average of {window} episodes")
    ax_curve.legend(loc="lower right")
    ax_curve.grid(alpha=0.3)

    ax_path.add_patch(plt.Rectangle((0.5, 2.5), 10, 1, color="0.4"))
    ax_path.text(5.5, 3, "cliff (-100, back to start)", ha="center", va="center", color="white")
    ax_path.text(0, 3, "S", ha="center", va="center", fontsize=14)
    ax_path.text(11, 3, "G", ha="center", va="center", fontsize=14)
    for stem, color, offset in (("cliff_sarsa", "C0", -0.08), ("cliff_q_learning", "C1", 0.08)):
        module, q = tables[stem]
        cells = path_cells(module, q)
        ax_path.plot(cells[:, 1], cells[:, 0] + offset, "-o", color=color, ms=3,
                     label=f"{STEMS[stem]} greedy path ({len(cells) - 1} steps)")  # fmt: skip
    ax_path.set_xlim(-0.5, 11.5)
    ax_path.set_ylim(3.5, -0.5)
    ax_path.set_xticks(range(12))
    ax_path.set_yticks(range(4))
    ax_path.grid(alpha=0.3)
    ax_path.set_aspect("equal")
    ax_path.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(cli.out, dpi=110)
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    main()
