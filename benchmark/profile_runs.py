"""Where a run's time goes: each file's `main` sampled every millisecond, its time split by library.

    python benchmark/profile_runs.py                                  # the files of the speed table
    python benchmark/profile_runs.py --algos ppo_cartpole --args "--total-steps 20000"

Each file runs in its own process (one torch thread, its defaults unless --args), so start-up is measured as a
user meets it: from launching the interpreter until `main` starts (interpreter, imports, argument parsing).
While `main` runs, a thread samples the main thread's stack every millisecond; each sample (weighted by the time
since the last one) is charged to the outermost library frame on the stack, or to imports:

- imports: a module imported while `main` runs (anywhere on the stack), such as `torch._dynamo`, which torch
  imports at the first call of an optimizer method (`torch.optim.Optimizer.add_param_group` is wrapped in
  `torch._disable_dynamo`, which imports the compiler stack, sympy included, to wrap it)
- environment: gymnasium (stepping, resets, wrappers)
- forward: torch.nn modules (the networks' forward passes) and torch.distributions
- backward: autograd (`loss.backward()`)
- optimizer: torch.optim (`optimizer.step()`, `zero_grad`)
- logging: tensorboard, tqdm, wandb
- the file's own lines: the rest of `main`, including tensor and numpy arithmetic written in the file,
  replay buffers, and the loop itself

A sampler sees Python frames only, so a torch operation called directly from the file (`ratio.clamp(...)`)
counts as the file's own line. Results: benchmark/results/profile/profile.json; `benchmark/run.py --report-only` puts
the table on docs/benchmarks.md.
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmark" / "results" / "profile" / "profile.json"  # not a results/*.json row
DEFAULT_ALGOS = {  # the files of the speed table; MPC on a shorter run (its per-action cost does not grow)
    "ppo_cartpole": "",
    "dqn_cartpole": "",
    "ddpg_pendulum": "",
    "sac_pendulum": "",
    "mpc_pendulum": "--total-steps 600",
}
CATEGORIES = ["imports", "environment", "forward", "backward", "optimizer", "logging", "own lines"]


def category(filename: str) -> str | None:
    """The library a frame's code belongs to, or None for the file's own code and everything else."""
    path = filename.replace("\\", "/")
    if "/gymnasium/" in path:
        return "environment"
    if "/torch/autograd/" in path or path.endswith("torch/_tensor.py"):
        return "backward"  # Tensor.backward -> torch.autograd.backward
    if "/torch/optim/" in path:
        return "optimizer"
    if any(part in path for part in ("/tensorboard/", "/tqdm/", "/wandb/")):
        return "logging"
    if "/torch/nn/" in path or "/torch/distributions/" in path:
        return "forward"
    return None


class Sampler(threading.Thread):
    """Every `interval` seconds, charge the time since the last sample to the outermost library frame."""

    def __init__(self, thread_id: int, interval: float = 0.001):
        super().__init__(daemon=True)
        self.thread_id, self.interval, self.running = thread_id, interval, True
        self.seconds = dict.fromkeys(CATEGORIES, 0.0)

    def run(self) -> None:
        last = time.perf_counter()
        while self.running:
            time.sleep(self.interval)
            frame = sys._current_frames().get(self.thread_id)
            now = time.perf_counter()
            stack = []
            while frame is not None:
                stack.append(frame.f_code.co_filename)
                frame = frame.f_back
            if any(name.startswith("<frozen importlib") for name in stack):
                kind = "imports"
            else:
                kind = next((k for k in map(category, reversed(stack)) if k), "own lines")
            self.seconds[kind] += now - last
            last = now


def child(stem: str, argv: list[str], out: str) -> None:
    """Runs in the sampled process: import the file, parse its arguments, sample `main`."""
    started = time.time()
    sys.path.insert(0, str(ROOT / "benchmark"))
    from algo_loader import load_algo

    module = load_algo(stem)
    import tyro

    args = tyro.cli(module.Args, args=argv)
    sys.setswitchinterval(0.0005)  # the sampler gets the interpreter soon after it wakes
    sampler = Sampler(threading.get_ident())
    main_started = time.time()
    sampler.start()
    summary = module.main(args)
    sampler.running = False
    main_seconds = time.time() - main_started
    sampler.join()
    record = {"child_started": started, "main_started": main_started, "main_seconds": main_seconds,
              "seconds": sampler.seconds, "summary": summary}  # fmt: skip
    Path(out).write_text(json.dumps(record))


def profile(stem: str, extra: str, runs_dir: str) -> dict:
    out = Path(runs_dir) / f"{stem}.profile.json"
    argv = [*shlex.split(extra), "--runs-dir", runs_dir, "--no-progress"]
    launched = time.time()
    subprocess.run(
        [sys.executable, __file__, "--child", stem, "--out", str(out), "--", *argv],
        check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    record = json.loads(out.read_text())
    total = sum(record["seconds"].values())
    return {
        "args": extra,
        "start_up_seconds": round(record["main_started"] - launched, 3),
        "main_seconds": round(record["main_seconds"], 3),
        "shares": {k: round(v / total, 3) for k, v in record["seconds"].items()},
        "total_steps": record["summary"].get("total_steps"),
        "eval_return_mean": record["summary"].get("eval_return_mean"),
    }


def table(results: dict) -> list[str]:
    """Markdown rows: start-up in seconds, then each category's share of the profiled `main`."""
    header = ["file", "run", "start-up (s)", "main (s)", *CATEGORIES]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for stem, r in results["files"].items():
        cells = [f"`{stem}`", f"`{r['args']}`" if r["args"] else "defaults", f"{r['start_up_seconds']:.2f}",
                 f"{r['main_seconds']:.1f}", *[f"{100 * r['shares'][c]:.0f}%" for c in CATEGORIES]]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="*", default=list(DEFAULT_ALGOS))
    parser.add_argument(
        "--args", default=None, help="flags for every file (default: each file's entry above)"
    )
    parser.add_argument("--runs-dir", default=str(ROOT / "benchmark" / "out" / "profile"))
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    cli, rest = parser.parse_known_args()
    if cli.child:
        child(cli.child, [a for a in rest if a != "--"], cli.out)
        return
    os.makedirs(cli.runs_dir, exist_ok=True)
    results = {
        "command": "python benchmark/profile_runs.py"
        + (f" --algos {' '.join(cli.algos)}" if cli.algos != list(DEFAULT_ALGOS) else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": round(os.getloadavg()[0], 1),  # runnable processes before the first run: 0-1 is idle
        "date": time.strftime("%Y-%m-%d"),
        "files": {},
    }
    for stem in cli.algos:
        extra = cli.args if cli.args is not None else DEFAULT_ALGOS.get(stem, "")
        results["files"][stem] = profile(stem, extra, cli.runs_dir)
        print("\n".join(table({"files": {stem: results["files"][stem]}})[2:]), flush=True)
    Path(cli.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cli.out).write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
