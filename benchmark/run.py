"""Train algos/ files (and Stable-Baselines3 peers) over several seeds; write the results pages.

    python benchmark/run.py                          # every file, seeds 1-5, peers, report
    python benchmark/run.py --algos ppo_cartpole --seeds 1 2 3
    python benchmark/run.py --report-only            # rebuild pages from benchmark/results/
    python benchmark/run.py --quick --out /tmp/bq    # smoke: tiny budgets, one seed

Each run is a subprocess; the runner reads its `summary.json` line and its TensorBoard
`charts/episodic_return` events. Seconds to threshold = from process start (just before the
subprocess is launched) until the mean of the last 10 training episodes first reaches the
threshold (CartPole 475, Pendulum -200). Results go to `benchmark/results/<name>.json`; the
report is `docs/benchmarks.md`, `docs/figures/bench_*.png` and the table in README.md.
"""

import argparse
import glob
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
PEERS = {"dqn_cartpole": "dqn", "ppo_cartpole": "ppo", "sac_pendulum": "sac", "ddpg_pendulum": "ddpg"}
FAMILIES = [
    ("Bandits", ["bandit_epsilon_greedy", "bandit_decaying_epsilon_greedy", "bandit_ucb",
                 "bandit_thompson_sampling", "bandit_softmax"]),
    ("Dynamic programming", ["cliff_policy_iteration", "cliff_value_iteration",
                             "frozenlake_policy_iteration", "frozenlake_value_iteration"]),
    ("Tabular TD", ["cliff_sarsa", "cliff_q_learning", "dyna_q"]),
    ("Value-based deep RL", ["dqn_cartpole", "dqn_pendulum", "ddqn_pendulum"]),
    ("Policy gradient", ["reinforce_cartpole", "actor_critic_cartpole", "ppo_cartpole"]),
    ("Continuous control", ["ddpg_pendulum", "sac_pendulum"]),
    ("Beyond online RL", ["gail_cartpole", "cql_pendulum", "mpc_pendulum"]),
]  # fmt: skip
EXTRA_KEYS = ["regret", "success_rate", "planning_ms_per_action"]  # shown where a summary has them


# ---------------------------------------------------------------- running
def steps_and_seconds_to(episodes: list, threshold: float | None) -> tuple[float | None, float | None]:
    """First (step, seconds) at which the mean of the last 10 training episodes reaches threshold."""
    if threshold is None:
        return None, None
    returns = [e[2] for e in episodes]
    for i in range(9, len(returns)):
        if sum(returns[i - 9 : i + 1]) / 10 >= threshold:
            return episodes[i][0], episodes[i][1]
    return None, None


def read_episodes(run_dir: str, start: float) -> list:
    """[(step, seconds since process start, return)] of every training episode, from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    if "charts/episodic_return" not in events.Tags()["scalars"]:
        return []
    return [
        (e.step, round(e.wall_time - start, 3), round(e.value, 3))
        for e in events.Scalars("charts/episodic_return")
    ]


def run_one(job: dict) -> dict:
    start = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="disabled", MPLBACKEND="Agg")
    out = subprocess.run(job["cmd"], cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.time() - start
    if out.returncode != 0:
        return {**job, "error": (out.stderr or out.stdout).strip().splitlines()[-1:], "wall_seconds": wall}
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    if job["peer"]:
        rows = Path(job["peer_out"], "episodes.csv").read_text().splitlines()[1:]
        episodes = [
            (int(s), round(float(t) - start, 3), float(r)) for s, t, r in (row.split(",") for row in rows)
        ]
    else:
        episodes = read_episodes(summary["run_dir"], start)
    steps, seconds = steps_and_seconds_to(episodes, THRESHOLDS.get(summary["env_id"]))
    record = {"name": job["name"], "seed": job["seed"], "command": shlex.join(job["cmd"][1:]),
              "wall_seconds": round(wall, 2), "steps_to_threshold": steps, "seconds_to_threshold": seconds,
              "summary": summary, "episodes": episodes}  # fmt: skip
    if job.get("gif") and not job["peer"]:
        record["gif"] = make_gif(summary["run_dir"], job["gif"])
    return record


def make_gif(run_dir: str, path: str) -> str | None:
    videos = sorted(glob.glob(os.path.join(run_dir, "videos", "*.mp4")))
    if not videos:
        return None
    from moviepy import VideoFileClip

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with VideoFileClip(videos[0]) as clip:
        clip = clip.subclipped(0, min(clip.duration, 8.0)).resized(width=240)
        clip.write_gif(path, fps=12, logger=None)
    return path


def make_jobs(cli) -> list[dict]:
    jobs = []
    for stem in cli.algos:
        smoke = (ROOT / "tests" / "smoke" / f"{stem}.args").read_text().split() if cli.quick else []
        for seed in cli.seeds:
            runs_dir = os.path.join(cli.work_dir, "runs", stem)
            cmd = [sys.executable, f"algos/{stem}.py", *smoke, "--seed", str(seed), "--no-progress",
                   "--runs-dir", runs_dir, *shlex.split(cli.extra)]  # fmt: skip
            job = {"name": stem, "seed": seed, "cmd": cmd, "peer": False}
            if cli.gifs and seed == cli.seeds[0] and any(k in stem for k in ("cartpole", "pendulum")):
                job["cmd"] += ["--capture-video"]
                job["gif"] = str(Path(cli.docs_dir) / "figures" / f"{stem}.gif")
            jobs.append(job)
            if cli.peers and stem in PEERS:
                algo = PEERS[stem]
                env_id = "CartPole-v1" if "cartpole" in stem else "Pendulum-v1"
                peer_out = os.path.join(cli.work_dir, "peers", f"{algo}_{seed}")
                cmd = [sys.executable, "benchmark/peer_sb3.py", "--algo", algo, "--env-id", env_id,
                       "--seed", str(seed), "--out", peer_out]  # fmt: skip
                cmd += ["--total-steps", "600"] if cli.quick else ["--stop-at", str(THRESHOLDS[env_id])]
                jobs.append({"name": f"sb3_{algo}_{stem.split('_')[-1]}", "seed": seed, "cmd": cmd,
                             "peer": True, "peer_out": peer_out})  # fmt: skip
    return jobs


# ---------------------------------------------------------------- reporting
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def aggregate(result: dict) -> dict:
    records = [r for r in result["records"] if "summary" in r]
    evals = [r["summary"]["eval_return_mean"] for r in records if "eval_return_mean" in r["summary"]]
    reached = [r for r in records if r["seconds_to_threshold"] is not None]
    row = {
        "seeds": len(records),
        "eval_median": median(evals),
        "eval_worst": min(evals) if evals else None,
        "reached": f"{len(reached)}/{len(records)}"
        if records and records[0]["summary"]["env_id"] in THRESHOLDS
        else "–",
        "steps_to_threshold": median([r["steps_to_threshold"] for r in reached]),
        "seconds_to_threshold": median([r["seconds_to_threshold"] for r in reached]),
        "steps_per_second": median([r["summary"]["steps_per_second"] for r in records]),
        "env_id": records[0]["summary"]["env_id"] if records else "",
    }
    for key in EXTRA_KEYS:
        values = [r["summary"][key] for r in records if key in r["summary"]]
        if values:
            row[key] = median(values)
    return row


def plot_curves(name: str, results: dict, figures_dir: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = [(n, results[n]) for n in [name, *[p for p in results if p.startswith("sb3_") and name in p]]]
    series = [(n, r) for n, r in series if any(rec.get("episodes") for rec in r["records"])]
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, result in series:
        for axis, column in ((axes[0], 0), (axes[1], 1)):
            curves = []
            for rec in result["records"]:
                ep = np.array(rec.get("episodes") or [], dtype=float).reshape(-1, 3)
                if len(ep) < 10:
                    continue
                smooth = np.convolve(ep[:, 2], np.ones(10) / 10, mode="valid")
                curves.append((ep[9:, column], smooth))
            if not curves:
                continue
            grid = np.linspace(0, max(c[0][-1] for c in curves), 200)
            stack = np.array([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
            with warnings.catch_warnings():  # grid points past a seed's last episode are NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                axis.plot(grid, np.nanmedian(stack, axis=0), label=f"{label} (median of {len(curves)})")
                axis.fill_between(grid, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0), alpha=0.2)
    env_id = results[name]["records"][0]["summary"]["env_id"]
    for axis, xlabel in zip(axes, ("environment steps", "seconds from process start")):
        if env_id in THRESHOLDS:
            axis.axhline(THRESHOLDS[env_id], color="gray", linestyle="--", linewidth=1)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("return, mean of last 10 episodes")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{name} on {env_id}: median and min-max over seeds")
    fig.tight_layout()
    figures_dir.mkdir(parents=True, exist_ok=True)
    path = figures_dir / f"bench_{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def write_report(results_dir: Path, docs_dir: Path, readme: Path | None) -> None:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    rows = {name: aggregate(result) for name, result in results.items()}
    lines = ["# Benchmarks", "", "Generated by `benchmark/run.py` from `benchmark/results/*.json`; do not edit by hand.",
             "Seconds to threshold: from process start until the mean of the last 10 training episodes",
             "first reaches the threshold (CartPole-v1 475, Pendulum-v1 -200); median over the seeds that",
             "reached it. Evaluation: the summary's `eval_return_mean` (greedy/deterministic policy).",
             "Peers (`sb3_*`): Stable-Baselines3 with rl-zoo3's tuned hyperparameters, run by",
             "`benchmark/peer_sb3.py` in the same invocation, stopped once they reach the threshold (so",
             "they have no final evaluation), with 1 torch thread as the algos/ files use. Runs go",
             "`--workers` at a time (default: one per core), so each run has about one core.", ""]  # fmt: skip
    for name, result in results.items():
        if name.startswith("sb3_"):
            continue
        row = rows[name]
        lines += [
            f"## {name}",
            "",
            f"- command: `{result['invocation']}` ({result['date']}, {result['machine']})",
        ]
        lines += [
            f"- per run: `{result['records'][0]['command']}` (seed varies)" if result["records"] else ""
        ]
        peer = next((p for p in results if p.startswith("sb3_") and name in p), None)
        header = "| | seeds | eval return median (worst) | reached | steps to thr. | s to thr. | steps/s |"
        lines += ["", header, "| --- | --- | --- | --- | --- | --- | --- |"]
        for label in [name] + ([peer] if peer else []):
            r = rows[label]
            lines.append(f"| {label} | {r['seeds']} | {fmt(r['eval_median'])} ({fmt(r['eval_worst'])}) | "
                         f"{r['reached']} | {fmt(r['steps_to_threshold'], 0)} | {fmt(r['seconds_to_threshold'])} | "
                         f"{fmt(r['steps_per_second'], 0)} |")  # fmt: skip
        extras = ", ".join(f"{k} median {fmt(row[k], 2)}" for k in EXTRA_KEYS if k in row)
        if extras:
            lines += ["", extras]
        figure = plot_curves(name, results, docs_dir / "figures")
        if figure:
            lines += ["", f"![{name} learning curves](figures/{figure})"]
        gif = next((r.get("gif") for r in result["records"] if r.get("gif")), None)
        if gif:
            lines += ["", f"![{name} after training](figures/{Path(gif).name})"]
        lines.append("")
    (docs_dir / "benchmarks.md").write_text("\n".join(lines))
    if readme is not None and readme.exists():
        write_readme_table(readme, rows)


def write_readme_table(readme: Path, rows: dict) -> None:
    table = ["| family | algorithm (docs) | env | eval return, median (worst) | s to threshold | steps/s | "
             "SB3 peer s to threshold |", "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for family, stems in FAMILIES:
        for stem in stems:
            if not (ROOT / "algos" / f"{stem}.py").exists():
                continue
            r = rows.get(stem)
            link = f"[`{stem}`](docs/algorithms/{stem}.md)"
            if r is None:
                table.append(f"| {family} | {link} | | not benchmarked yet | | | |")
                continue
            extra = "".join(f"; {k} {fmt(r[k], 2)}" for k in EXTRA_KEYS if k in r)
            peer = next((rows[p] for p in rows if p.startswith("sb3_") and stem in p), None)
            peer_s = f"{fmt(peer['seconds_to_threshold'])} ({peer['reached']} seeds)" if peer else ""
            if peer and peer["seconds_to_threshold"] and r["seconds_to_threshold"]:
                peer_s += f", ours {peer['seconds_to_threshold'] / r['seconds_to_threshold']:.1f}x faster"
            table.append(f"| {family} | {link} | {r['env_id']} | {fmt(r['eval_median'])} ({fmt(r['eval_worst'])})"
                         f"{extra} | {fmt(r['seconds_to_threshold'])} | {fmt(r['steps_per_second'], 0)} | {peer_s} |")  # fmt: skip
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + start + "\n" + "\n".join(table) + "\n" + end + rest.split(end, 1)[1]
        readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark algos/ files over seeds and write the results pages."
    )
    parser.add_argument("--algos", nargs="*", default=None, help="file stems (default: every algos/*.py)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel runs (default: cores)")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip Stable-Baselines3 peers")
    parser.add_argument("--no-gifs", dest="gifs", action="store_false", help="skip the evaluation GIFs")
    parser.add_argument("--extra", default="", help="extra arguments for every algos/ run")
    parser.add_argument("--quick", action="store_true", help="smoke budgets, seed 1, short peers")
    parser.add_argument("--out", default=None, help="write results and report here instead of the repo")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from saved results")
    cli = parser.parse_args()
    cli.algos = cli.algos or sorted(p.stem for p in (ROOT / "algos").glob("*.py"))
    if cli.quick:
        cli.seeds = cli.seeds[:1]
    out = Path(cli.out) if cli.out else None
    results_dir = out / "results" if out else ROOT / "benchmark" / "results"
    cli.docs_dir = out if out else ROOT / "docs"
    cli.work_dir = str(out / "work") if out else str(ROOT / "benchmark" / "out")
    readme = None if out else ROOT / "README.md"
    if not cli.report_only:
        jobs = make_jobs(cli)
        print(f"{len(jobs)} runs, {cli.workers} at a time", file=sys.stderr)
        with ThreadPoolExecutor(cli.workers) as pool:
            records = list(pool.map(run_one, jobs))
        results_dir.mkdir(parents=True, exist_ok=True)
        invocation = shlex.join(["python", "benchmark/run.py", *sys.argv[1:]])
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {cli.workers} worker(s)"
        for name in dict.fromkeys(r["name"] for r in records):
            mine = [r for r in records if r["name"] == name]
            for r in mine:
                if "error" in r:
                    print(f"{name} seed {r['seed']} failed: {r['error']}", file=sys.stderr)
            result = {"name": name, "invocation": invocation, "date": time.strftime("%Y-%m-%d"),
                      "machine": machine, "records": mine}  # fmt: skip
            (results_dir / f"{name}.json").write_text(json.dumps(result))
            row = aggregate(result)
            print(f"{name:32s} eval {fmt(row['eval_median'])} (worst {fmt(row['eval_worst'])}) "
                  f"reached {row['reached']} s->thr {fmt(row['seconds_to_threshold'])} "
                  f"steps/s {fmt(row['steps_per_second'], 0)}", file=sys.stderr)  # fmt: skip
    write_report(results_dir, Path(cli.docs_dir), readme)


if __name__ == "__main__":
    main()
