"""Wall time of the numpy-only files at their defaults, as a user meets it: `python algos/<stem>.py`, from launching
the interpreter until it exits, runs made one after another, median and worst.

    python benchmark/wall_time.py                             # every numpy-only file, 5 runs each
    python benchmark/wall_time.py --algos bandit_ucb --repeats 9

Results: benchmark/results/profile/wall_time.json (not a results/*.json row); `benchmark/run.py --report-only` puts
the table on docs/benchmarks.md, below the profile of the deep files.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmark" / "results" / "profile" / "wall_time.json"


def numpy_only() -> list[str]:
    """The files that compute with numpy alone (they import no torch)."""
    paths = sorted((ROOT / "algos").glob("*.py"))
    return [p.stem for p in paths if "\nimport torch\n" not in p.read_text()]


def table(results: dict) -> list[str]:
    """Markdown rows: median and worst wall time of each file."""
    lines = ["| file | median (s) | worst (s) | runs |", "| --- | --- | --- | --- |"]
    for stem, r in results["files"].items():
        lines.append(
            f"| `{stem}` | {r['median_seconds']:.2f} | {r['worst_seconds']:.2f} | {len(r['seconds'])} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="*", default=None, help="default: every numpy-only file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULT))
    cli = parser.parse_args()
    stems = cli.algos or numpy_only()
    results = {
        "command": "python benchmark/wall_time.py"
        + (f" --algos {' '.join(stems)}" if cli.algos else "")
        + (f" --repeats {cli.repeats}" if cli.repeats != 5 else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": round(os.getloadavg()[0], 1),  # runnable processes before the first run: 0-1 is idle
        "date": time.strftime("%Y-%m-%d"),
        "files": {},
    }
    with tempfile.TemporaryDirectory() as runs_dir:
        for stem in stems:
            seconds = []
            for _ in range(cli.repeats):
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, f"algos/{stem}.py", "--runs-dir", runs_dir],
                    check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
                )  # fmt: skip
                seconds.append(round(time.perf_counter() - started, 3))
            results["files"][stem] = {
                "median_seconds": statistics.median(seconds),
                "worst_seconds": max(seconds),
                "seconds": seconds,
            }
            print(table({"files": {stem: results["files"][stem]}})[-1], flush=True)
    Path(cli.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cli.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
