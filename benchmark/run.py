"""Train algos/ files (and Stable-Baselines3 peers) over several seeds; write the results pages.

    python benchmark/run.py                          # every file, seeds 1-5, peers, report
    python benchmark/run.py --algos ppo_cartpole --seeds 1 2 3
    python benchmark/run.py --report-only            # rebuild pages from benchmark/results/
    python benchmark/run.py --quick --out benchmark/out/quick   # smoke: tiny budgets, one seed
    python benchmark/run.py --ray                    # each run a Ray task on a local Ray instance
    python benchmark/run.py --ray-address auto       # ... on the Ray cluster this machine belongs to

Each run is a subprocess (`--workers` at a time in a local thread pool, or one Ray task with one
CPU each, or a GPU fraction with `--cuda`); the runner reads its `summary.json` line and its
TensorBoard `charts/episodic_return` events. A Ray task sends the run directory back as a
tarball, so summaries and events always end up under this machine's `benchmark/out/`, and the
results and report are made here the same way whichever way the runs went. Seconds to threshold
= from process start (just before the subprocess is launched) until the mean of the last 10
training episodes first reaches the threshold (CartPole 475, Pendulum -200). Results go to
`benchmark/results/<name>.json`; the report is `docs/benchmarks.md` and its Chinese twin
`docs/benchmarks.zh.md`, `docs/figures/bench_*.png` and the tables in README.md (one per family,
each with its own measure). Paths written there are relative to the repository.
"""

import argparse
import glob
import io
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmark"))  # its helpers, also when run.py is imported by the tests
from algo_loader import read_scalars  # noqa: E402
from profile_runs import table as profile_table  # noqa: E402
from wall_time import table as wall_time_table  # noqa: E402

THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
PEERS = {
    "dqn_cartpole": "dqn",
    "actor_critic_cartpole": "a2c",
    "ppo_cartpole": "ppo",
    "ppo_pendulum": "ppo",
    "sac_pendulum": "sac",
    "ddpg_pendulum": "ddpg",
    "td3_pendulum": "td3",
    "trpo_cartpole": "trpo",
}
FAMILIES = [
    ("Bandits", ["bandit_epsilon_greedy", "bandit_decaying_epsilon_greedy", "bandit_ucb",
                 "bandit_thompson_sampling", "bandit_softmax"]),
    ("Dynamic programming", ["cliff_policy_iteration", "cliff_value_iteration",
                             "frozenlake_policy_iteration", "frozenlake_value_iteration"]),
    ("Tabular TD", ["cliff_sarsa", "cliff_expected_sarsa", "cliff_n_step_sarsa", "cliff_q_learning", "dyna_q"]),
    ("Value-based deep RL", ["dqn_cartpole", "dqn_pendulum", "ddqn_pendulum", "dueling_dqn_pendulum"]),
    ("Policy gradient", ["reinforce_cartpole", "actor_critic_cartpole", "ppo_cartpole", "ppo_pendulum",
                         "trpo_cartpole"]),
    ("Continuous control", ["ddpg_pendulum", "sac_pendulum", "td3_pendulum", "sac_discrete_cartpole"]),
    ("Beyond online RL", ["gail_cartpole", "bc_cartpole", "cql_pendulum", "mpc_pendulum"]),
]  # fmt: skip
EXTRA_KEYS = ["regret", "success_rate", "planning_ms_per_action"]  # shown where a summary has them
TIMING_KEYS = {"wall_seconds", "seconds_to_threshold", "steps_per_second", "train_seconds"}  # vary run to run
GRACE_SECONDS = 10  # after SIGTERM (the files then evaluate and write their summary) before SIGKILL
RAY_EXCLUDES = ["/.git/", "/docs/", "/site/", "/runs/", "/wandb/", "/benchmark/out/", "/benchmark/results/"]


def repo_path(path) -> str:
    """`path` relative to the repository when it lies inside it (what results and reports hold)."""
    path = Path(ROOT, path).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def scrub(value, root: Path | str = ROOT):
    """Strings with the repository's absolute path made relative (error lines, commands, run dirs)."""
    if isinstance(value, str):
        return value.replace(f"{str(root).rstrip('/')}/", "")
    if isinstance(value, list):
        return [scrub(v, root) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, root) for k, v in value.items()}
    return value


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
    points = read_scalars(str(Path(ROOT, run_dir)), "charts/episodic_return")
    return [(step, round(wall - start, 3), round(float(value), 3)) for step, wall, value in points]


def last_json_line(stdout: str) -> dict | None:
    lines = stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return summary if isinstance(summary, dict) else None


def pack_dir(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(path, arcname=".")
    return buffer.getvalue()


def execute(job: dict, timeout: float | None = None, root: str | None = None, pack: bool = False) -> dict:
    """Run one job's command in `root` (this repository, or a Ray worker's copy of it).

    Stops it with SIGTERM after `timeout` seconds (the files then evaluate what they learned and
    write an interrupted summary), SIGKILL if it is still there GRACE_SECONDS later. With `pack`,
    the run's directory comes back as tarball bytes keyed by its path (for a Ray task: the head
    writes them to its own disk). Standard library only: this runs on Ray workers too.
    """
    root = Path(root or ROOT)
    cmd = [sys.executable if i == 0 and part == "python" else part for i, part in enumerate(job["cmd"])]
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="disabled", MPLBACKEND="Agg")
    if not job.get("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""  # runs take one CPU each unless the benchmark asks for --cuda
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stopped = None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stopped = f"--timeout {timeout:g} s reached, sent SIGTERM"
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    raw = {"returncode": proc.returncode, "start": start, "wall_seconds": round(time.time() - start, 2),
           "stdout": scrub("\n".join(stdout.splitlines()[-40:]), root),
           "stderr": scrub("\n".join(stderr.splitlines()[-40:]), root),
           "stopped": stopped, "host": platform.node()}  # fmt: skip
    if pack:
        summary = last_json_line(stdout) or {}
        dirs = [summary.get("run_dir"), job.get("peer_out")]
        raw["files"] = {
            scrub(str(d), root): pack_dir(Path(root, d)) for d in dirs if d and Path(root, d).is_dir()
        }
    return raw


def unpack(files: dict) -> None:
    """Write the run directories a Ray worker sent back, unless this machine already has them."""
    for path, data in files.items():
        dest = Path(ROOT, path)
        if dest.exists():  # a local Ray instance, or a shared disk: the worker wrote them here
            continue
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            try:
                tar.extractall(dest, filter="data")  # no paths out of dest, no devices
            except TypeError:  # a Python from before the filter argument (3.10.11 and older)
                tar.extractall(dest)


def error_line(raw: dict) -> str:
    lines = [line for line in (raw.get("stderr") or raw.get("stdout") or "").splitlines() if line.strip()]
    code = raw.get("returncode")
    why = f"exit status {code}"
    if isinstance(code, int) and code < 0:
        try:
            why = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            why = f"killed by signal {-code}"
    if raw.get("stopped"):
        why = f"{raw['stopped']} ({why})"
    return f"{why}: {lines[-1].strip()}" if lines else why


def finish(job: dict, raw: dict) -> dict:
    """The record of one run (head side): summary, training episodes, steps and seconds to threshold.

    A run that failed, was killed or was interrupted before its budget gets an "error" line and no
    "summary" (an interrupted run's summary is kept as "partial"), so that "summary" always means a
    run that finished.
    """
    record = {"name": job["name"], "seed": job["seed"], "command": scrub(shlex.join(job["cmd"][1:])),
              "wall_seconds": raw.get("wall_seconds")}  # fmt: skip
    if raw.get("files"):
        unpack(raw["files"])
    if raw.get("error"):  # the task itself failed (e.g. a Ray worker died)
        return {**record, "error": raw["error"]}
    summary = last_json_line(raw["stdout"]) if raw["returncode"] == 0 else None
    if summary is None:
        return {**record, "error": error_line(raw)}
    summary = scrub(summary)
    if summary.get("interrupted"):
        why = raw.get("stopped") or "stopped by a signal"
        return {**record, "error": f"interrupted before its budget: {why}", "partial": summary}
    start = raw["start"]
    try:
        if job["peer"]:
            rows = Path(ROOT, job["peer_out"], "episodes.csv").read_text().splitlines()[1:]
            episodes = [
                (int(s), round(float(t) - start, 3), float(r)) for s, t, r in (row.split(",") for row in rows)
            ]
        else:
            episodes = read_episodes(summary["run_dir"], start)
    except Exception as error:  # noqa: BLE001 - a run's broken output is that run's error, not the sweep's
        return {**record, "error": f"cannot read its episodes: {type(error).__name__}: {error}"}
    threshold = job["threshold"] if "threshold" in job else THRESHOLDS.get(summary.get("env_id"))
    steps, seconds = steps_and_seconds_to(episodes, threshold)
    record.update(steps_to_threshold=steps, seconds_to_threshold=seconds, summary=summary, episodes=episodes)
    if job.get("gif") and not job["peer"]:
        try:
            record["gif"] = make_gif(summary["run_dir"], job["gif"])
        except Exception as error:  # noqa: BLE001 - a missing codec costs the GIF, not the run
            print(f"{job['name']} seed {job['seed']}: no GIF ({error})", file=sys.stderr)
    return record


def make_gif(run_dir: str, path: str) -> str | None:
    videos = sorted(glob.glob(os.path.join(ROOT, run_dir, "videos", "*.mp4")))
    if not videos:
        return None
    from moviepy import VideoFileClip

    path = Path(ROOT, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoFileClip(videos[0]) as clip:
        clip = clip.subclipped(0, min(clip.duration, 8.0)).resized(width=240)
        clip.write_gif(str(path), fps=12, logger=None)
    return repo_path(path)


def _ray_execute(job: dict, timeout: float | None) -> dict:
    """The Ray task: runs in the worker's copy of the repository and sends the run directory back."""
    return execute(job, timeout, root=os.getcwd(), pack=True)


class Dispatcher:
    """Runs jobs `workers` at a time in a local thread pool, or as Ray tasks (`ray_address`, or
    `ray_local` for a new local instance). Ray is imported only then. The repository goes to the
    workers as the job's working_dir; each task takes one CPU, and `gpu_fraction` of a GPU when
    the job has "cuda". Tasks are not retried: a dead worker is that run's error."""

    def __init__(self, workers: int | None = None, ray_address: str | None = None, ray_local: bool = False,
                 ray_cpus: int | None = None, gpu_fraction: float = 0.25, timeout: float | None = None):  # fmt: skip
        self.timeout, self.gpu_fraction, self.ray = timeout, gpu_fraction, None
        self.workers = workers or os.cpu_count() or 1
        if not (ray_address or ray_local):
            self.pool = ThreadPoolExecutor(self.workers)
            return
        try:
            import ray
        except ImportError:
            raise SystemExit(
                "error: --ray and --ray-address need Ray: pip install -r benchmark/requirements.txt"
            ) from None
        from ray import cloudpickle

        module = sys.modules[_ray_execute.__module__]
        if module.__name__ != "__main__":  # imported (by sweep.py): workers cannot import it by name
            cloudpickle.register_pickle_by_value(module)
        runtime_env = {"working_dir": str(ROOT), "excludes": RAY_EXCLUDES}
        kwargs = (
            {"address": ray_address}
            if ray_address
            else {"address": "local", "num_cpus": ray_cpus, "include_dashboard": False}
        )
        for attempt in range(1 if ray_address else 3):  # a busy machine can miss Ray's 30 s start-up
            try:
                ray.init(runtime_env=runtime_env, log_to_driver=False, **kwargs)
                break
            except Exception as error:  # noqa: BLE001 - Ray raises plain Exception on a slow start
                ray.shutdown()
                last = [line for line in str(error).splitlines() if line.strip()][-1:] or [
                    type(error).__name__
                ]
                where = (
                    f"join the Ray cluster at {ray_address}" if ray_address else "start a local Ray instance"
                )
                if ray_address or attempt == 2:
                    raise SystemExit(f"error: cannot {where}: {last[0].strip()}") from None
                print(f"could not {where} ({last[0].strip()}); trying again", file=sys.stderr)
        self.ray = ray
        self.task = ray.remote(max_retries=0)(_ray_execute)

    def describe(self) -> str:
        if self.ray is None:
            return f"{platform.machine()}, {os.cpu_count()} cores, {self.workers} worker(s)"
        resources = self.ray.cluster_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        gpus = f", {resources['GPU']:g} GPUs" if resources.get("GPU") else ""
        return f"Ray: {nodes} node(s), {resources.get('CPU', 0):g} CPUs{gpus}, one CPU per run"

    def capacity(self) -> int:
        """How many runs go at once."""
        if self.ray is None:
            return self.workers
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def submit(self, job: dict) -> Future:
        """A future of the run's raw result (see `execute`); `collect` turns it into its record."""
        if self.ray is None:
            return self.pool.submit(execute, job, self.timeout)
        num_gpus = self.gpu_fraction if job.get("cuda") else 0
        if num_gpus and not self.ray.cluster_resources().get("GPU"):
            raise SystemExit("error: --cuda, but the Ray cluster has no GPU")
        return self.task.options(num_cpus=1, num_gpus=num_gpus).remote(job, self.timeout).future()

    def run(self, jobs: list[dict], on_record=None) -> list[dict]:
        """Every job's record, in the order of `jobs`; `on_record(job, record)` as each one finishes."""
        futures = {self.submit(job): i for i, job in enumerate(jobs)}
        records = [None] * len(jobs)
        for future in as_completed(futures):
            i = futures[future]
            records[i] = collect(jobs[i], future)
            if on_record:
                on_record(jobs[i], records[i])
        return records

    def close(self) -> None:
        if self.ray is None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        else:
            self.ray.shutdown()


def saving_progress(jobs: list[dict], results_dir: Path, invocation: str, machine: str, on_saved=None):
    """The dispatcher's `on_record`: print each run; once every seed of a name is in, write
    `<results_dir>/<name>.json` (records in the jobs' seed order, through a temporary name) and call
    `on_saved(result)`. A benchmark stopped part-way keeps the names it finished."""
    seeds_of: dict[str, list] = {}
    for job in jobs:
        seeds_of.setdefault(job["name"], []).append(job["seed"])
    done: dict[str, list] = {name: [] for name in seeds_of}

    def progress(job: dict, record: dict) -> None:
        status = record.get("error") or f"eval {fmt(record['summary'].get('eval_return_mean'))}"
        print(f"  {record['name']} seed {record['seed']}: {status}", file=sys.stderr)
        mine, seeds = done[job["name"]], seeds_of[job["name"]]
        mine.append(record)
        if len(mine) == len(seeds):
            mine.sort(key=lambda r: seeds.index(r["seed"]))
            result = {"name": job["name"], "invocation": invocation, "date": time.strftime("%Y-%m-%d"),
                      "machine": machine, "records": mine}  # fmt: skip
            results_dir.mkdir(parents=True, exist_ok=True)
            tmp = results_dir / f"{job['name']}.json.tmp"
            tmp.write_text(json.dumps(result))
            tmp.replace(results_dir / f"{job['name']}.json")  # a stop mid-write never leaves half a file
            if on_saved:
                on_saved(result)

    return progress


def collect(job: dict, future: Future) -> dict:
    try:
        raw = future.result()
    except Exception as error:  # noqa: BLE001 - a Ray task that died (worker killed, node lost)
        lines = [line for line in str(error).splitlines() if line.strip()]
        raw = {"error": f"{type(error).__name__}: {lines[-1].strip() if lines else ''}"}
    try:
        return finish(job, raw)
    except Exception as error:  # noqa: BLE001 - one broken run must not stop the others
        return {"name": job["name"], "seed": job["seed"], "error": f"{type(error).__name__}: {error}"}


def make_jobs(cli) -> list[dict]:
    jobs = []
    work_dir = repo_path(cli.work_dir)
    for stem in cli.algos:
        smoke = (ROOT / "tests" / "smoke" / f"{stem}.args").read_text().split() if cli.quick else []
        for seed in cli.seeds:
            runs_dir = f"{work_dir}/runs/{stem}"
            cmd = ["python", f"algos/{stem}.py", *smoke, "--seed", str(seed), "--no-progress",
                   "--runs-dir", runs_dir, *shlex.split(cli.extra)]  # fmt: skip
            job = {"name": stem, "seed": seed, "cmd": cmd, "peer": False, "cuda": cli.cuda}
            if cli.gifs and seed == cli.seeds[0] and any(k in stem for k in ("cartpole", "pendulum")):
                job["cmd"] += ["--capture-video"]
                job["gif"] = repo_path(Path(cli.docs_dir) / "figures" / f"{stem}.gif")
            jobs.append(job)
            if cli.peers and stem in PEERS:
                algo = PEERS[stem]
                env_id = "CartPole-v1" if "cartpole" in stem else "Pendulum-v1"
                peer_out = f"{work_dir}/peers/{peer_name(stem)}_{seed}"  # one folder per file's peer
                cmd = ["python", "benchmark/peer_sb3.py", "--algo", algo, "--env-id", env_id,
                       "--seed", str(seed), "--out", peer_out]  # fmt: skip
                cmd += ["--total-steps", "600"] if cli.quick else ["--stop-at", str(THRESHOLDS[env_id])]
                jobs.append({"name": peer_name(stem), "seed": seed, "cmd": cmd,
                             "peer": True, "peer_out": peer_out, "cuda": cli.cuda})  # fmt: skip
    return jobs


# ---------------------------------------------------------------- reporting
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def aggregate(result: dict) -> dict:
    """One table row: medians over the seeds that finished (a summary field may be null)."""
    records = [r for r in result["records"] if "summary" in r and "error" not in r]
    evals = [r["summary"].get("eval_return_mean") for r in records]
    evals = [v for v in evals if v is not None]
    reached = [r for r in records if r.get("seconds_to_threshold") is not None]
    env_id = records[0]["summary"].get("env_id", "") if records else ""
    row = {
        "seeds": len(records),
        "failed": len(result["records"]) - len(records),
        "eval_median": median(evals),
        "eval_worst": min(evals) if evals else None,
        "reached": f"{len(reached)}/{len(records)}" if records and env_id in THRESHOLDS else "–",
        "steps_to_threshold": median([r.get("steps_to_threshold") for r in reached]),
        "seconds_to_threshold": median([r.get("seconds_to_threshold") for r in reached]),
        "steps_per_second": median([r["summary"].get("steps_per_second") for r in records]),
        "env_id": env_id,
    }
    for key in EXTRA_KEYS:
        values = [r["summary"][key] for r in records if r["summary"].get(key) is not None]
        if values:
            row[key] = median(values)
    return row


def plot_curves(name: str, results: dict, figures_dir: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = [(n, results[n]) for n in [name, peer_of(name, results)] if n]
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
    env_id = next((r["summary"]["env_id"] for r in results[name]["records"] if "summary" in r), "")
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


def family_sections(names: list[str]) -> list[tuple[str, list[str]]]:
    """(family, file stems) in curriculum order; stems no family lists go to "Other" at the end."""
    known = [stem for _, stems in FAMILIES for stem in stems]
    sections = [(family, [s for s in stems if s in names]) for family, stems in FAMILIES]
    other = [n for n in names if n not in known and not n.startswith("sb3_")]
    return [(f, s) for f, s in sections + [("Other", other)] if s]


def peer_name(stem: str) -> str | None:
    """The name of a file's peer in results (sb3_<algo>_<env family>: sb3_a2c_cartpole for actor_critic_cartpole)."""
    return f"sb3_{PEERS[stem]}_{stem.split('_')[-1]}" if stem in PEERS else None


def peer_of(stem: str, results: dict) -> str | None:
    name = peer_name(stem)
    return name if name in results else None


def rerun_command(stems: list[str], results: dict) -> str:
    """One `benchmark/run.py` command that remakes a family's table (the options that change numbers)."""
    seeds = sorted({r["seed"] for s in stems for r in results[s]["records"]})
    argv = ["python", "benchmark/run.py", "--seeds", *map(str, seeds), "--algos", *stems]
    if any(s in PEERS for s in stems) and not any(peer_of(s, results) for s in stems):
        argv.append("--no-peers")
    for stem in stems:  # options of the invocations that made the results
        tokens = shlex.split(results[stem].get("invocation", ""))
        for flag in ("--extra", "--timeout"):
            if flag in tokens and tokens.index(flag) + 1 < len(tokens) and flag not in argv:
                argv += [flag, tokens[tokens.index(flag) + 1]]
        for flag in ("--quick", "--cuda"):
            if flag in tokens and flag not in argv:
                argv.append(flag)
    return shlex.join(argv)


# The Chinese twin of docs/benchmarks.md (docs/benchmarks.zh.md): the same tables and figures, with
# Chinese headings and sentences; family names as in mkdocs.yml's nav_translations.
FAMILY_ZH = {"Bandits": "多臂老虎机", "Dynamic programming": "动态规划", "Tabular TD": "表格型时序差分",
             "Value-based deep RL": "基于价值的深度强化学习", "Policy gradient": "策略梯度",
             "Continuous control": "连续控制", "Beyond online RL": "在线强化学习之外", "Other": "其他"}  # fmt: skip
REPORT_INTRO = {
    "en": ["# Benchmarks", "", "Generated by `benchmark/run.py` from `benchmark/results/*.json`; do not edit by hand.",
           "One table per family, in the curriculum's order, each with the one command that remakes it.",
           "Evaluation: the summary's `eval_return_mean` (greedy/deterministic policy), median (worst) over",
           "the seeds that finished. Threshold: the mean of the last 10 training episodes reaches 475 on",
           "CartPole-v1 or -200 on Pendulum-v1; *reached* counts the seeds that got there, and steps and",
           "seconds to threshold are medians over those seeds, seconds counted from process start.",
           "Peers (`sb3_*`): Stable-Baselines3 with rl-zoo3's tuned hyperparameters, run by",
           "`benchmark/peer_sb3.py` in the same invocation, stopped once they reach the threshold (so",
           "they have no final evaluation), with 1 torch thread as the algos/ files use. Runs go",
           "`--workers` at a time (default: one per core), or one Ray task per CPU with `--ray`",
           "([running on a cluster](cluster.md)), so each run has about one core.", ""],
    "zh": ["# 基准测试", "", "由 `benchmark/run.py` 根据 `benchmark/results/*.json` 生成，请勿手工编辑。",
           "每个算法族一张表，按课程顺序排列，每张表附有重新生成它的那一条命令。",
           "评估：摘要中的 `eval_return_mean`（贪心或确定性策略），取完成运行的种子的中位数（最差值）。",
           "阈值：最近 10 个训练回合的平均回报在 CartPole-v1 上达到 475、在 Pendulum-v1 上达到 -200；",
           "“达到阈值”统计到达的种子数，到达阈值的步数和秒数是这些种子的中位数，秒数从进程启动算起。",
           "对照（`sb3_*`）：使用 rl-zoo3 超参数的 Stable-Baselines3，由 `benchmark/peer_sb3.py` 在同一次调用中运行，",
           "到达阈值即停止（因此没有最终评估），与 algos/ 中的文件一样只用 1 个 torch 线程。运行按 `--workers`",
           "个并行（默认每核一个），或用 `--ray` 每个 CPU 一个 Ray 任务（[在集群上运行](cluster.md)），",
           "因此每次运行大约占一个核。", ""],
}  # fmt: skip
REPORT_WORDS = {
    "en": {"header": ["algorithm", "env", "seeds", "eval return, median (worst)", "reached threshold",
                      "steps to thr.", "s to thr.", "steps/s"],
           "measured": "Measured {}.", "failed": " (+{} failed)", "not_finished": "Runs that did not finish:",
           "failure": "- `{}` seed {}: {}", "curves": "{} learning curves", "after": "{} after training"},
    "zh": {"header": ["算法", "环境", "种子数", "评估回报：中位数（最差）", "达到阈值", "到达阈值的步数",
                      "到达阈值的秒数", "每秒步数"],
           "measured": "测量于 {}。", "failed": "（另有 {} 个失败）", "not_finished": "未完成的运行：",
           "failure": "- `{}` 种子 {}：{}", "curves": "{} 的学习曲线", "after": "训练后的 {}"},
}  # fmt: skip


def write_report(results_dir: Path, docs_dir: Path, readme: Path | None) -> None:
    """docs/benchmarks.md and its Chinese twin benchmarks.zh.md (the same tables and figures), the
    learning-curve figures, and the README's tables."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    rows = {name: aggregate(result) for name, result in results.items()}
    pages = {lang: list(intro) for lang, intro in REPORT_INTRO.items()}
    for family, stems in family_sections(list(results)):
        made = "; ".join(
            sorted({f"{results[s].get('date', '?')}, {results[s].get('machine', '?')}" for s in stems})
        )
        extras = [k for k in EXTRA_KEYS if any(k in rows[s] for s in stems)]
        for lang, lines in pages.items():
            words = REPORT_WORDS[lang]
            title = FAMILY_ZH.get(family, family) if lang == "zh" else family
            lines += [f"## {title}", "", "```bash", rerun_command(stems, results), "```", "",
                      words["measured"].format(made), ""]  # fmt: skip
            header = [*words["header"], *extras]
            lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            failures = []
            for label in [n for s in stems for n in [s, peer_of(s, results)] if n]:
                r = rows[label]
                seeds = f"{r['seeds']}" + (words["failed"].format(r["failed"]) if r["failed"] else "")
                cells = [f"`{label}`", r["env_id"], seeds, f"{fmt(r['eval_median'])} ({fmt(r['eval_worst'])})",
                         r["reached"], fmt(r["steps_to_threshold"], 0), fmt(r["seconds_to_threshold"]),
                         fmt(r["steps_per_second"], 0), *(fmt(r.get(k), 2) for k in extras)]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
                failures += [words["failure"].format(label, rec["seed"], rec["error"])
                             for rec in results[label]["records"] if "error" in rec]  # fmt: skip
            if failures:
                lines += ["", words["not_finished"], "", *failures]
            lines.append("")
        for stem in stems:
            figure = plot_curves(stem, results, docs_dir / "figures")
            gif = next((r.get("gif") for r in results[stem]["records"] if r.get("gif")), None)
            for lang, lines in pages.items():
                words = REPORT_WORDS[lang]
                if figure or gif:
                    lines += [f"### {stem}", ""]
                if figure:
                    lines += [f"![{words['curves'].format(stem)}](figures/{figure})", ""]
                if gif:
                    lines += [f"![{words['after'].format(stem)}](figures/{Path(gif).name})", ""]
    profile_section(results_dir / "profile" / "profile.json", pages)
    (docs_dir / "benchmarks.md").write_text("\n".join(pages["en"]).rstrip() + "\n")
    (docs_dir / "benchmarks.zh.md").write_text("\n".join(pages["zh"]).rstrip() + "\n")
    if readme is not None and readme.exists():
        write_readme_table(readme, results)


PROFILE_WORDS = {
    "en": ("Where the time goes", "Measured with `{}` on {} ({}): start-up is from launching the interpreter "
           "until `main` starts (interpreter, imports, argument parsing); the shares split the time inside `main` "
           "by the library the main thread was in, or by imports made inside `main` (sampled every millisecond; see "
           "benchmark/profile_runs.py). The first optimizer call imports `torch._dynamo` (a compiler stack no file "
           "uses, sympy included): torch wraps `Optimizer.add_param_group` in `torch._disable_dynamo`, so every "
           "run that builds an optimizer, a peer's too, pays that import once."),
    "zh": ("时间花在哪里", "用 `{}` 在 {}（{}）上测得：启动时间从启动解释器到进入 `main`（解释器、导入、参数解析）；"
           "各列是 `main` 内的时间按主线程所在的库（或 `main` 内发生的导入）划分的比例（每毫秒采样一次，见 "
           "benchmark/profile_runs.py）。第一次调用优化器时会导入 `torch._dynamo`（一套本项目没有任何文件用到的编译器栈，"
           "含 sympy）：torch 用 `torch._disable_dynamo` 包装了 `Optimizer.add_param_group`，所以每个创建优化器的"
           "运行（对照实现也不例外）都要承担一次这项导入的开销。"),
}  # fmt: skip


def profile_section(path: Path, pages: dict) -> None:
    """The table benchmark/profile_runs.py wrote, when it has been run."""
    if not path.exists():
        return
    profile = json.loads(path.read_text())
    for lang, lines in pages.items():
        title, text = PROFILE_WORDS[lang]
        lines += [f"## {title}", "", text.format(profile["command"], profile["date"], profile["machine"]), "",
                  *profile_table(profile), ""]  # fmt: skip
    wall = path.parent / "wall_time.json"
    if wall.exists():
        walls = json.loads(wall.read_text())
        for lang, lines in pages.items():
            lines += [WALL_WORDS[lang].format(walls["command"], walls["date"], walls["machine"]), "",
                      *wall_time_table(walls), ""]  # fmt: skip


WALL_WORDS = {
    "en": ("The numpy-only files, run as a user runs them (`python algos/<file>.py`, its defaults): wall time from "
           "launching the interpreter until it exits, runs one after another, measured with `{}` on {} ({})."),
    "zh": ("只用 numpy 的文件按用户实际的用法运行（`python algos/<文件>.py`，默认参数）：墙钟时间从启动解释器算到进程退出，"
           "各次运行依次进行，用 `{}` 在 {}（{}）上测得。"),
}  # fmt: skip


# README: one table per family, each with the measure that ranks that family. No steps/s column:
# a "step" is a pull x bandits for bandits, a state backup for dynamic programming, an env step for
# TD and deep RL, a gradient step for offline RL, so one column of them would compare nothing.
FAMILY_KIND = {"Bandits": "bandit", "Dynamic programming": "dp", "Tabular TD": "td"}  # others: "deep"
# env_id: (measure, summary key, known optimum, why it is the optimum, options of a run that change it)
OPTIMA = {
    "CliffWalking-v1": ("greedy return", "eval_return_mean", -13.0, "the 13-step path along the cliff",
                        ("--env-id",)),
    "FrozenLake-v1": ("success rate", "success_rate", 0.7402,
                      "4x4, slippery: exact success probability of the gamma = 0.99 optimal policy within "
                      "the 100-step limit", ("--gamma", "--map-name", "--is-slippery", "--no-is-slippery",
                                             "--max-episode-steps")),
}  # fmt: skip
EXTRA_LABELS = {"planning_ms_per_action": "planning ms per action"}


def finished(result: dict) -> list[dict]:
    """The records of runs that finished (a summary, no error)."""
    return [r for r in result.get("records", []) if "summary" in r and "error" not in r]


def summary_values(result: dict, key: str) -> list:
    return [r["summary"][key] for r in finished(result) if r["summary"].get(key) is not None]


def median_worst(values: list, worst=min, digits: int = 1) -> str:
    """`median (worst)`; `worst` is min where higher is better, max where lower is (regret)."""
    return f"{fmt(median(values), digits)} ({fmt(worst(values), digits)})" if values else "–"


def reached_seeds(result: dict) -> tuple[list[dict], int]:
    """(records that reached the threshold, seeds run); a seed that failed did not reach it."""
    records = result.get("records", [])
    return [r for r in finished(result) if r.get("seconds_to_threshold") is not None], len(records)


def optimum_of(result: dict) -> tuple | None:
    """OPTIMA's entry for the result's env, unless one of its runs set an option that changes the optimum."""
    records = finished(result)
    entry = OPTIMA.get(records[0]["summary"].get("env_id")) if records else None
    if entry is None:
        return None
    flags = {t.split("=")[0] for r in result["records"] for t in shlex.split(r.get("command") or "")}
    return None if flags & set(entry[4]) else entry


def seed_statement(labels: list[str], results: dict) -> tuple[str, bool]:
    """What the table is made from, counted from the records; True when rows need their own seeds column."""
    per_label = {label: sorted(r["seed"] for r in results[label]["records"]) for label in labels}
    seeds = sorted({s for v in per_label.values() for s in v})
    failed = any(len(finished(results[label])) < len(per_label[label]) for label in labels)
    uniform = all(v == seeds for v in per_label.values())
    listed = ", ".join(map(str, seeds))
    if uniform:
        text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} per algorithm ({listed})"
    else:
        text = f"seeds {listed}, not every algorithm has every one (see the seeds column)"
    if failed:
        text += "; median (worst) is over the seeds that finished"
    made = sorted(
        {f"{results[label].get('date', '?')} on {results[label].get('machine', '?')}" for label in labels}
    )
    return f"From {text}; measured {'; '.join(made)}.", failed or not uniform


def seeds_cell(result: dict) -> str:
    n, k = len(result.get("records", [])), len(finished(result))
    return f"{k}" if k == n else f"{k} of {n} ({n - k} failed)"


def table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def bandit_rows(stems: list[str], results: dict, link) -> tuple[list[str], list[list[str]], list[str]]:
    pulls = sorted({v for s in stems if s in results for v in summary_values(results[s], "total_steps")})
    after = f" after {fmt(pulls[0], 0)} pulls" if len(pulls) == 1 else ""
    header = ["algorithm", f"regret{after}, median (worst)", "greedy arm's reward, median (worst)",
              "best arm's expected reward"]  # fmt: skip
    rows = []
    for stem in stems:
        if stem not in results:
            rows.append([link(stem), "not benchmarked yet", "", ""])
            continue
        result = results[stem]
        rows.append([link(stem), median_worst(summary_values(result, "regret"), max),
                     median_worst(summary_values(result, "eval_return_mean"), min, 3),
                     fmt(median(summary_values(result, "best_arm_expected_reward")), 3)])  # fmt: skip
    errors = [r["summary"]["eval_return_std"] / r["summary"]["eval_episodes"] ** 0.5
              for s in stems if s in results for r in finished(results[s])
              if r["summary"].get("eval_return_std") is not None and r["summary"].get("eval_episodes")]  # fmt: skip
    sampled = f" (standard error about {median(errors):.3f})" if errors else ""
    notes = ["Regret: expected regret summed over the pulls, sum of p* - p(a_t), mean over the bandits a run "
             "plays side by side; lower is better, worst is the highest. Greedy arm's reward: reward of each "
             "bandit's greedy arm after training, sampled over the evaluation episodes" + sampled + ", so it "
             "can lie just above the best arm's expected reward, the most it can be on average."]  # fmt: skip
    if len(pulls) > 1:
        header.insert(1, "pulls")
        for stem, row in zip(stems, rows):
            row.insert(
                1, fmt(median(summary_values(results[stem], "total_steps")), 0) if stem in results else ""
            )
    return header, rows, notes


def dp_rows(stems: list[str], results: dict, link) -> tuple[list[str], list[list[str]], list[str]]:
    header = ["algorithm", "env", "measure", "median (worst)", "known optimum", "iterations", "sweeps"]
    rows, optima = [], {}
    for stem in stems:
        if stem not in results:
            rows.append([link(stem), "", "not benchmarked yet", "", "", "", ""])
            continue
        result = results[stem]
        records = finished(result)
        env_id = records[0]["summary"].get("env_id", "") if records else ""
        entry = optimum_of(result)
        what, key = (entry[0], entry[1]) if entry else ("greedy return", "eval_return_mean")
        if entry:
            optima[env_id] = entry
        digits = 3 if key == "success_rate" else 1
        episodes = median(summary_values(result, "eval_episodes"))
        measure = (
            f"{what} ({fmt(episodes, 0)} greedy episodes)" if key == "success_rate" and episodes else what
        )
        rows.append([link(stem), env_id, measure, median_worst(summary_values(result, key), min, digits),
                     fmt(entry[2], 4 if key == "success_rate" else 1) if entry else "–",
                     fmt(median(summary_values(result, "iterations")), 0),
                     fmt(median(summary_values(result, "num_updates")), 0)])  # fmt: skip
    notes = [f"Known optimum, {env}: {entry[0]} {entry[2]:g} ({entry[3]})." for env, entry in optima.items()]
    notes.append("Iterations: policy improvements (policy iteration) or sweeps (value iteration); sweeps: "
                 "backups of every state, the work both do.")  # fmt: skip
    return header, rows, notes


def td_rows(stems: list[str], results: dict, link) -> tuple[list[str], list[list[str]], list[str]]:
    header = ["algorithm", "env", "greedy return, median (worst)", "known optimum",
              "greedy path length, median (longest)", "real steps to the optimal path, median (seeds)",
              "training steps"]  # fmt: skip
    rows, missing, optima = [], [], {}
    for stem in stems:
        if stem not in results:
            rows.append([link(stem), "", "not benchmarked yet", "", "", "", ""])
            continue
        result = results[stem]
        records = finished(result)
        env_id = records[0]["summary"].get("env_id", "") if records else ""
        entry = optimum_of(result)
        if entry and entry[1] == "eval_return_mean":
            optima[env_id] = entry
        paths = summary_values(result, "path_length")
        path = median_worst(paths, max, 0)
        if len(paths) < len(records):
            path += f"; {len(records) - len(paths)} of {len(records)} never reach the goal"
        if records and not any("steps_to_target" in r["summary"] for r in records):
            missing.append(stem)
            to_target = "not in these results"
        else:
            found = summary_values(result, "steps_to_target")
            n = len(result["records"])
            to_target = f"{fmt(median(found), 0)} ({len(found)}/{n})" if found else f"never (0/{n})"
        rows.append([link(stem), env_id, median_worst(summary_values(result, "eval_return_mean")),
                     fmt(entry[2]) if entry and entry[1] == "eval_return_mean" else "–",
                     path, to_target,
                     fmt(median(summary_values(result, "total_steps")), 0)])  # fmt: skip
    notes = [
        f"Known optimum, {env}: greedy return {entry[2]:g} ({entry[3]})." for env, entry in optima.items()
    ]
    notes += ["Real steps to the optimal path: environment steps of training (Dyna-Q's planning updates not "
             "counted) until the greedy path first has the optimal return, checked at the end of each "
             "episode; (k/n): the seeds that got there."]  # fmt: skip
    if missing:
        notes.append(f"{', '.join(f'`{s}`' for s in missing)}: these results do not record it; the table "
                     "shows the final greedy return and path only.")  # fmt: skip
    return header, rows, notes


def deep_rows(stems: list[str], results: dict, link) -> tuple[list[str], list[list[str]], list[str]]:
    header = ["algorithm", "env", "eval return, median (worst)", "reached threshold", "steps to threshold",
              "s to threshold"]  # fmt: skip
    extras = [k for k in EXTRA_KEYS if k in EXTRA_LABELS and any(summary_values(results[s], k)
                                                                 for s in stems if s in results)]  # fmt: skip
    peers = {s: peer_of(s, results) for s in stems if s in results}
    with_peers = any(peers.values())
    header += [EXTRA_LABELS[k] for k in extras]
    if with_peers:
        header += ["SB3 peer: reached, steps, s", "peer s / ours s"]
    rows = []
    for stem in stems:
        if stem not in results:
            rows.append([link(stem), "", "not benchmarked yet", *[""] * (len(header) - 3)])
            continue
        result = results[stem]
        records = finished(result)
        env_id = records[0]["summary"].get("env_id", "") if records else ""
        reached, n = reached_seeds(result)
        steps = fmt(median([r.get("steps_to_threshold") for r in reached]), 0)
        seconds = median([r["seconds_to_threshold"] for r in reached])
        if not records:
            reach = f"0/{n}"
        elif env_id not in THRESHOLDS:
            reach = "no threshold"
        elif records and not any(r.get("episodes") for r in records):
            reach = "no training episodes"
        else:
            reach = f"{len(reached)}/{n}"
        row = [link(stem), env_id, median_worst(summary_values(result, "eval_return_mean")), reach, steps,
               fmt(seconds)]  # fmt: skip
        row += [fmt(median(summary_values(result, k)), 2) for k in extras]
        if with_peers:
            peer, cell, ratio = peers.get(stem), "", ""
            if peer:
                peer_reached, peer_n = reached_seeds(results[peer])
                peer_s = median([r["seconds_to_threshold"] for r in peer_reached])
                cell, ratio = f"{len(peer_reached)}/{peer_n}", "–"
                if peer_reached:
                    peer_steps = median([r.get("steps_to_threshold") for r in peer_reached])
                    cell += f"; {fmt(peer_steps, 0)} steps; {fmt(peer_s)} s"
                if n and peer_n and len(reached) == n and len(peer_reached) == peer_n and seconds:
                    ratio = f"{peer_s / seconds:.1f}x"
            row += [cell, ratio]
        rows.append(row)
    notes = ["Threshold: the mean of the last 10 training episodes reaches 475 (CartPole-v1) or -200 "
             "(Pendulum-v1); reached: seeds that got there of the seeds run; steps and seconds to it: "
             "medians over those seeds, seconds from process start."]  # fmt: skip
    if with_peers:
        notes.append("SB3 peer: Stable-Baselines3 with rl-zoo3's tuned hyperparameters, same machine and "
                     "invocation, stopped at the threshold (so no evaluation return). The ratio is given only "
                     "where both reached the threshold on every seed.")  # fmt: skip
    return header, rows, notes


def readme_tables(results: dict, algos_dir: Path | None = None) -> str:
    """The README's results block: one table per family, each with its measure, seeds and command."""
    algos_dir = algos_dir or ROOT / "algos"
    on_disk = sorted(p.stem for p in algos_dir.glob("*.py"))
    names = list(dict.fromkeys([*on_disk, *results]))
    lines = ["Made from `benchmark/results/*.json` by `benchmark/run.py` (`--report-only` rebuilds them "
             "without running anything); each family's command reruns its table. Median (worst) over seeds; "
             "curves, failures and per-run commands are in [docs/benchmarks.md](docs/benchmarks.md).", ""]  # fmt: skip
    makers = {"bandit": bandit_rows, "dp": dp_rows, "td": td_rows}
    for family, stems in family_sections(names):
        stems = [s for s in stems if s in on_disk]
        if not stems:
            continue
        benchmarked = [s for s in stems if s in results]
        link = lambda stem: f"[`{stem}`](docs-md/algorithms/{stem}.md)"  # noqa: E731 - host-readable pages
        header, rows, notes = makers.get(FAMILY_KIND.get(family), deep_rows)(stems, results, link)
        lines += [f"### {family}", ""]
        if benchmarked:
            labels = [n for s in benchmarked for n in [s, peer_of(s, results)] if n]
            statement, per_row = seed_statement(labels, results)
            if per_row:
                header.insert(1, "seeds")
                for stem, row in zip(stems, rows):
                    row.insert(1, seeds_cell(results[stem]) if stem in results else "")
            lines += [statement, "", *table_lines(header, rows), "", *notes, "", "```bash",
                      rerun_command(benchmarked, results), "```", ""]  # fmt: skip
        else:
            lines += ["Not benchmarked yet:", "", *table_lines(header, rows), "", "```bash",
                      shlex.join(["python", "benchmark/run.py", "--algos", *stems]), "```", ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def write_readme_table(readme: Path, results: dict) -> None:
    """Replace what lies between the README's results markers with `readme_tables`."""
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + start + "\n" + readme_tables(results) + end + rest.split(end, 1)[1]
        readme.write_text(text)


def add_dispatch_args(parser: argparse.ArgumentParser) -> None:
    """Where the runs go: shared by run.py and sweep.py."""
    group = parser.add_argument_group("where the runs go (default: a thread pool on this machine)")
    group.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel runs in the local pool")
    group.add_argument("--ray", action="store_true", help="each run a Ray task on a new local Ray instance")
    group.add_argument("--ray-address", default=None, help="join a running Ray cluster ('auto' or host:port)")
    group.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local instance (default: all)")
    group.add_argument("--cuda", action="store_true", help="let runs use a GPU (default: CPU only)")
    group.add_argument(
        "--gpu-fraction", type=float, default=0.25, help="GPU share of each Ray task with --cuda"
    )
    group.add_argument("--timeout", type=float, default=None, help="stop a run after this many seconds")


def make_dispatcher(cli) -> Dispatcher:
    return Dispatcher(cli.workers, cli.ray_address, cli.ray, cli.ray_cpus, cli.gpu_fraction, cli.timeout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark algos/ files over seeds and write the results pages."
    )
    parser.add_argument("--algos", nargs="*", default=None, help="file stems (default: every algos/*.py)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip Stable-Baselines3 peers")
    parser.add_argument("--no-gifs", dest="gifs", action="store_false", help="skip the evaluation GIFs")
    parser.add_argument("--extra", default="", help="extra arguments for every algos/ run")
    parser.add_argument("--quick", action="store_true", help="smoke budgets, seed 1, short peers")
    parser.add_argument("--out", default=None, help="write results and report here instead of the repo")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from saved results")
    add_dispatch_args(parser)
    cli = parser.parse_args()
    cli.algos = cli.algos or sorted(p.stem for p in (ROOT / "algos").glob("*.py"))
    if cli.quick:
        cli.seeds = cli.seeds[:1]
    out = Path(cli.out).resolve() if cli.out else None
    results_dir = out / "results" if out else ROOT / "benchmark" / "results"
    cli.docs_dir = out if out else ROOT / "docs"
    cli.work_dir = str(out / "work") if out else str(ROOT / "benchmark" / "out")
    readme = None if out else ROOT / "README.md"
    if not cli.report_only:
        jobs = make_jobs(cli)
        dispatcher = make_dispatcher(cli)
        machine = dispatcher.describe()
        print(f"{len(jobs)} runs on {machine}", file=sys.stderr)

        invocation = scrub(shlex.join(["python", "benchmark/run.py", *sys.argv[1:]]))

        def report(result: dict) -> None:
            for r in result["records"]:
                if "error" in r:
                    print(f"{result['name']} seed {r['seed']} failed: {r['error']}", file=sys.stderr)
            row = aggregate(result)
            print(f"{result['name']:32s} eval {fmt(row['eval_median'])} (worst {fmt(row['eval_worst'])}) "
                  f"reached {row['reached']} steps->thr {fmt(row['steps_to_threshold'], 0)} "
                  f"s->thr {fmt(row['seconds_to_threshold'])} steps/s {fmt(row['steps_per_second'], 0)}",
                  file=sys.stderr)  # fmt: skip

        try:
            dispatcher.run(jobs, saving_progress(jobs, results_dir, invocation, machine, report))
        finally:
            dispatcher.close()
    write_report(results_dir, Path(cli.docs_dir), readme)


if __name__ == "__main__":
    main()
