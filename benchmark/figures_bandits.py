"""The bandit comparison: all five strategies' regret curves on one figure, and the regret tables.

Runs each `algos/bandit_*.py` file's own `main` with its defaults (except `--num-runs` and the
seed), reads the `charts/regret` curve back from its TensorBoard events, and writes
`docs/figures/bandit_regret.png`. Prints the markdown tables of docs/bandit_comparison.md:
mean regret and spread over bandits per strategy, and the sensitivity of each to its own
hyperparameter. About 1 minute on 2 cores.

    python benchmark/figures_bandits.py                     # the page's numbers
    python benchmark/figures_bandits.py --num-runs 200 --seeds 1 --no-sweep
"""

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from algo_loader import load_algo, read_scalars  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {  # stem: (label, the flag of its own hyperparameter, values tried in the sweep)
    "bandit_epsilon_greedy": ("epsilon-greedy", "epsilon", [0.0, 0.01, 0.05, 0.1, 0.2]),
    "bandit_decaying_epsilon_greedy": ("decaying epsilon-greedy", "epsilon_scale", [2, 5, 10, 20, 50, 100]),
    "bandit_softmax": ("softmax", "temperature", [0.02, 0.05, 0.1, 0.15, 0.2]),
    "bandit_ucb": ("UCB1", "ucb_c", [0.25, 0.5, 0.71, 1.0, 1.41]),
    "bandit_thompson_sampling": ("Thompson sampling", "prior_alpha", [0.5, 1, 2, 5]),
}


def run(stem: str, runs_dir: str, **overrides) -> dict:
    """One run of the file's main, defaults except `overrides`; quiet."""
    module = load_algo(stem)
    args = module.Args(runs_dir=runs_dir, progress=False, **overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        return module.main(args)


def regret_curve(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(step, value) for step, _, value in read_scalars(run_dir, "charts/regret")]
    return np.array([0] + [s for s, _ in points]), np.array([0.0] + [v for _, v in points])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-runs", type=int, default=1000, help="R, bandits per run (mean over them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the first makes the figure")
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "bandit_regret.png"))
    opts = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs_dir = tempfile.mkdtemp(prefix="bandit_runs_")
    print(f"command: python benchmark/figures_bandits.py {' '.join(sys.argv[1:])}".rstrip())
    seeds = " | ".join(f"seed {s}" for s in opts.seeds)
    print(f"\n| strategy | default | regret at 1000 | regret at 5000 (mean ± std over bandits) | {seeds} |")
    print("| --- | --- | --- | --- |" + " --- |" * len(opts.seeds))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for stem, (label, field, _) in STRATEGIES.items():
        summaries = [run(stem, runs_dir, seed=seed, num_runs=opts.num_runs) for seed in opts.seeds]
        first = summaries[0]
        steps, curve = regret_curve(first["run_dir"])
        ax.plot(steps, curve, label=f"{label} ({first['regret']:.0f})")
        at_1000 = curve[np.searchsorted(steps, 1000)]
        default = getattr(load_algo(stem).Args(), field)
        print(
            f"| {label} | `--{field.replace('_', '-')} {default}` | {at_1000:.1f} "
            f"| {first['regret']:.1f} ± {first['regret_std']:.1f} | "
            + " | ".join(f"{s['regret']:.1f}" for s in summaries)
            + " |"
        )
    ax.set_xlabel("pulls t")
    ax.set_ylabel(f"expected regret, mean of {opts.num_runs} bandits")
    ax.set_title(f"10-armed Bernoulli bandits, seed {opts.seeds[0]}, defaults of each file")
    ax.legend(title="strategy (regret at 5000)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(opts.out, dpi=110)
    print(f"\nwrote {opts.out}")
    if opts.sweep:
        print("\n| strategy | hyperparameter | regret at 5000 pulls (seed 1, 200 bandits) |")
        print("| --- | --- | --- |")
        for stem, (label, field, values) in STRATEGIES.items():
            cells = [
                f"{v}: {run(stem, runs_dir, seed=1, num_runs=200, **{field: v})['regret']:.0f}"
                for v in values
            ]
            print(f"| {label} | `--{field.replace('_', '-')}` | {', '.join(cells)} |")
    shutil.rmtree(runs_dir)


if __name__ == "__main__":
    main()
