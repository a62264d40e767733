"""BC against GAIL as the demonstrations shrink: the first n (state, action) pairs of one PPO teacher's episodes.

Builds the demonstrations once with `algos/bc_cartpole.py --expert-episodes 10 --seed <data seed>` (the PPO
teacher is gail_cartpole.py's for the same seed, to the bit) and keeps its `expert.npz`. The teacher's episodes
must all be whole 500-step ones (`expert_return` 500; the script stops otherwise), so n = 500 k pairs are its
first k episodes and n < 500 the first n steps of its first episode. Then, on each cut, BC with its defaults
for seeds 1..N and GAIL with its defaults for the seeds and cuts asked for (`--gail-seeds`, `--gail-pairs`:
GAIL trains 100 000 student steps a run, BC 2 000 gradient steps), one subprocess at a time under `nice`.
Runs already in --runs-dir are kept (a stopped script resumes); --no-train only reads them. Writes
docs/figures/bc_vs_gail_data.png and prints the markdown table the docs quote.

    python benchmark/figures_bc.py --runs-dir runs/bc_data   # BC: seeds 1-5, GAIL: seeds 1-3, every cut
"""

import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET, EPISODE = 475.0, 500  # CartPole-v1's threshold and time limit


def run(stem: str, argv: list[str], runs_dir: str) -> None:
    cmd = ["nice", "-n", "10", sys.executable, f"algos/{stem}.py", *argv, "--no-progress"]
    subprocess.run([*cmd, "--runs-dir", runs_dir], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def summaries(runs_dir: str) -> list[dict]:
    found = [json.load(open(p)) for p in glob.glob(os.path.join(runs_dir, "*", "summary.json"))]
    return sorted(found, key=lambda s: s["seed"])


def cut(data_dir: str, pairs: list[int]) -> dict[int, str]:
    """`expert_<n>.npz` beside the teacher's file: its first n pairs, for each n."""
    (summary,) = summaries(data_dir)
    if summary["expert_return"] != EPISODE:
        sys.exit(f"the teacher's episodes are not all {EPISODE} steps (expert_return {summary['expert_return']}):"
                 " try another --data-seed")  # fmt: skip
    paths = {}
    with np.load(os.path.join(summary["run_dir"], "expert.npz")) as data:
        for n in pairs:
            paths[n] = os.path.join(data_dir, f"expert_{n}.npz")
            np.savez(paths[n], observations=data["observations"][:n], actions=data["actions"][:n])
    return paths


def label(n: int) -> str:
    return f"{n} ({n // EPISODE} ep.)" if n % EPISODE == 0 else f"{n} ({n / EPISODE:g} ep.)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="BC seeds 1..N on each cut")
    parser.add_argument("--gail-seeds", type=int, default=3, help="GAIL seeds 1..N (0: no GAIL runs)")
    parser.add_argument("--pairs", type=int, nargs="+", default=[50, 100, 200, 500, 1000, 2500, 5000])
    parser.add_argument("--gail-pairs", type=int, nargs="+", default=None, help="GAIL's cuts (default: all)")
    parser.add_argument("--data-seed", type=int, default=1, help="seed of the teacher that demonstrates")
    parser.add_argument("--runs-dir", default="runs/bc_data")
    parser.add_argument("--no-train", action="store_true", help="only read runs already in --runs-dir")
    args = parser.parse_args()
    data_dir = os.path.join(args.runs_dir, "data")
    if not args.no_train and not summaries(data_dir):
        episodes = str(math.ceil(max(args.pairs) / EPISODE))
        data_argv = ["--expert-episodes", episodes, "--seed", str(args.data_seed)]
        run("bc_cartpole", [*data_argv, "--total-steps", "1", "--eval-episodes", "1"], data_dir)
    paths = cut(data_dir, args.pairs)
    results: dict[str, dict[int, list[dict]]] = {"BC": {}, "GAIL": {}}
    gail_pairs = [n for n in args.gail_pairs or args.pairs if n in args.pairs] if args.gail_seeds else []
    for name, stem, seeds, cuts in (
        ("BC", "bc_cartpole", args.seeds, args.pairs),
        ("GAIL", "gail_cartpole", args.gail_seeds, gail_pairs),
    ):
        for n in cuts:
            runs_dir = os.path.join(args.runs_dir, f"{stem}_{n}")
            done = {s["seed"] for s in summaries(runs_dir)}
            for seed in range(1, seeds + 1) if not args.no_train else ():
                if seed not in done:
                    run(stem, ["--expert-data", paths[n], "--seed", str(seed)], runs_dir)
            results[name][n] = summaries(runs_dir)
    print(
        f"demonstrations: the first n pairs of the greedy episodes of the PPO teacher of seed {args.data_seed}\n"
    )
    print("| expert pairs (episodes) | BC: median (worst) | BC seeds >= 475 | BC agreement | "
          "GAIL: median (worst) | GAIL seeds >= 475 | GAIL agreement |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in args.pairs:
        cells = [label(n)]
        for name in ("BC", "GAIL"):
            runs = results[name].get(n, [])
            returns = [s["eval_return_mean"] for s in runs]
            if returns:
                cells += [f"{statistics.median(returns):.1f} ({min(returns):.1f})",
                          f"{sum(r >= TARGET for r in returns)}/{len(returns)}"]  # fmt: skip
            else:
                cells += ["not run", ""]
            agreement = [s["expert_action_agreement"] for s in runs]  # greedy student = expert, on its pairs
            cells.append(f"{statistics.median(agreement):.3f}" if agreement else "")
        print("| " + " | ".join(cells) + " |")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (name, marker) in enumerate((("BC", "o"), ("GAIL", "s"))):
        ns = [n for n in args.pairs if results[name].get(n)]
        if not ns:
            continue
        shift = 1.0 + 0.08 * (i - 0.5)  # side by side on the log axis
        for n in ns:
            returns = [s["eval_return_mean"] for s in results[name][n]]
            ax.scatter([n * shift] * len(returns), returns, marker=marker, alpha=0.35, color=f"C{i}", s=18)
        medians = [statistics.median(s["eval_return_mean"] for s in results[name][n]) for n in ns]
        seeds = max(len(results[name][n]) for n in ns)
        legend = f"{name}, median of {seeds} seeds"
        ax.plot([n * shift for n in ns], medians, marker=marker, color=f"C{i}", label=legend)
    ax.set_ylim(0, 520)
    ax.axhline(TARGET, color="black", linestyle=":", label="target 475")
    ax.set_xscale("log")
    ax.set_xticks(args.pairs, [str(n) for n in args.pairs])
    ax.set_xlabel("expert (state, action) pairs (500 = one whole episode)")
    ax.set_ylabel("evaluation return (10 episodes)")
    ax.set_title("CartPole-v1: BC and GAIL on the same demonstrations")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out = ROOT / "docs" / "figures" / "bc_vs_gail_data.png"
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
