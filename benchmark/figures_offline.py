"""CQL against plain offline SAC (`--cql-alpha 0`) on the same dataset, several seeds.

Builds one medium-replay dataset with `algos/cql_pendulum.py` (its own online SAC, seed 1, then
reused), trains CQL with its defaults and with `--cql-alpha 0` from it for seeds 1..N (one
subprocess at a time, under `nice`), or with --no-train reads the runs already in --runs-dir.
Writes docs/figures/offline_cql_vs_sac.png (evaluation return per seed, the dataset's average
episode return and the -250 target) and prints the markdown table the docs quote.

    python benchmark/figures_offline.py --seeds 3 --runs-dir /tmp/offline_runs
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

ROOT = Path(__file__).resolve().parents[1]
TARGET = -250.0


def run(argv: list[str], runs_dir: str) -> None:
    cmd = ["nice", "-n", "10", sys.executable, "algos/cql_pendulum.py", *argv, "--no-progress"]
    subprocess.run([*cmd, "--runs-dir", runs_dir], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def summaries(runs_dir: str) -> list[dict]:
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(runs_dir, "*", "summary.json")))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs-dir", default="/tmp/offline_runs")
    parser.add_argument("--no-train", action="store_true", help="only read runs already in --runs-dir")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "offline_cql_vs_sac.png"))
    args = parser.parse_args()
    variants = {"CQL (defaults)": [], "offline SAC (--cql-alpha 0)": ["--cql-alpha", "0"]}
    dataset_dir = os.path.join(args.runs_dir, "dataset")
    if not args.no_train:
        run(["--total-steps", "1"], dataset_dir)  # the online SAC run that builds the dataset
    dataset = glob.glob(os.path.join(dataset_dir, "*", "dataset.npz"))[0]
    results = {}
    for i, (name, extra) in enumerate(variants.items()):
        out = os.path.join(args.runs_dir, f"variant{i}")
        if not args.no_train:
            for seed in range(1, args.seeds + 1):
                run(["--dataset", dataset, "--seed", str(seed), *extra], out)
        results[name] = sorted(summaries(out), key=lambda s: s["seed"])
    data_return = next(iter(results.values()))[0]["dataset_return"]
    print(f"dataset: `{os.path.relpath(dataset, args.runs_dir)}`, average episode return {data_return:.1f}\n")
    print(
        "| variant | " + " | ".join(f"seed {s['seed']}" for s in next(iter(results.values()))) + " | median |"
    )
    print("| --- " * (args.seeds + 2) + "|")
    for name, runs in results.items():
        values = [s["eval_return_mean"] for s in runs]
        print(
            f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {statistics.median(values):.1f} |"
        )
    fig, ax = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / len(results)
    for i, (name, runs) in enumerate(results.items()):
        xs = [s["seed"] + (i - (len(results) - 1) / 2) * width for s in runs]
        ax.bar(xs, [s["eval_return_mean"] for s in runs], width, label=name)
    ax.axhline(data_return, color="grey", linestyle="--", label="dataset average episode return")
    ax.axhline(TARGET, color="black", linestyle=":", label="target -250")
    ax.set_xlabel("seed")
    ax.set_ylabel("evaluation return (10 episodes)")
    ax.set_title("Pendulum-v1, one medium-replay dataset")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
