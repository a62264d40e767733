"""benchmark/run.py and benchmark/sweep.py with their runs as Ray tasks, on a local Ray instance of
2 CPUs that the CLIs join with --ray-address: the same table as the local thread pool (timings
aside), a 2 x 2 x 2 sweep whose run directories come back to this machine, a failed and a killed
run reported while the others finish, and a resumed sweep that runs only what did not finish.

The outputs go under benchmark/out/ (inside the repository, ignored by git), so that runs write
into the Ray workers' copy of the repository and only the returned tarballs put them here.
"""

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="Ray is not installed: pip install -r benchmark/requirements.txt (CI installs it)",
    ),
    pytest.mark.xdist_group("ray"),  # one worker starts the local Ray instance once
]
sys.path.insert(0, str(ROOT / "benchmark"))
from run import TIMING_KEYS  # noqa: E402

ALGOS = ["bandit_epsilon_greedy", "cliff_q_learning"]  # numpy files: seconds per run, deterministic
BANDIT = "--total-steps 200 --num-runs 4 --eval-episodes 2"


@pytest.fixture(scope="module")
def ray_env():
    """Start a local Ray instance with 2 CPUs; the environment a CLI needs to join it."""
    saved = os.environ.get("RAY_AUTH_MODE")
    # Token authentication on (ray.init makes the token, ~/.ray/auth_token) for this instance and the
    # CLIs that join it; Ray reads the mode when it is imported, hence the import below.
    os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    error = None
    for _ in range(3):  # on a loaded machine the raylet can miss Ray's fixed 30 s start-up window
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as exc:  # noqa: BLE001
            error = exc
            ray.shutdown()
    else:
        pytest.fail(f"could not start a local Ray instance: {error}")
    address = ray.get_runtime_context().gcs_address
    try:
        yield {"address": address, "env": dict(os.environ)}
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture
def out_dir():
    path = ROOT / "benchmark" / "out" / f"pytest-ray-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli(args: list[str], env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def table(report: str) -> list[dict]:
    """The rows of the report's tables, without the columns that are timings."""
    rows, header = [], []
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| algorithm"):
            header = cells
        elif line.startswith("| `"):
            rows.append({h: c for h, c in zip(header, cells) if h not in ("s to thr.", "steps/s")})
    return rows


def test_benchmark_gives_the_same_table_with_and_without_ray(ray_env, out_dir):
    base = ["benchmark/run.py", "--quick", "--no-gifs", "--no-peers", "--algos", *ALGOS]
    cli([*base, "--out", str(out_dir / "pool"), "--workers", "2"])
    proc = cli([*base, "--out", str(out_dir / "ray"), "--ray-address", ray_env["address"]], ray_env["env"])
    assert "on Ray: 1 node(s), 2 CPUs" in proc.stderr
    pool, on_ray = ((out_dir / d / "benchmarks.md").read_text() for d in ("pool", "ray"))
    assert table(on_ray) == table(pool) and len(table(pool)) == len(ALGOS)
    for stem in ALGOS:
        results = [
            json.loads((out_dir / d / "results" / f"{stem}.json").read_text()) for d in ("pool", "ray")
        ]
        summaries = [
            {k: v for k, v in r["records"][0]["summary"].items() if k not in TIMING_KEYS | {"run_dir"}}
            for r in results
        ]
        assert summaries[0] == summaries[1], stem
        run_dir = results[1]["records"][0]["summary"]["run_dir"]
        assert not os.path.isabs(run_dir) and run_dir.startswith(f"benchmark/out/{out_dir.name}/ray/")
        files = os.listdir(ROOT / run_dir)  # written by a worker in its copy, sent back as a tarball
        assert "summary.json" in files and any(f.startswith("events.out.tfevents") for f in files), files


def test_sweep_on_ray_reports_the_best_point_and_resumes(ray_env, out_dir):
    args = ["benchmark/sweep.py", "bandit_epsilon_greedy", "--param", "epsilon=0.01,0.3", "num-arms=5,10",
            "--seeds", "1", "2", "--fixed", BANDIT, "--figure", "regret", "--out", str(out_dir),
            "--ray-address", ray_env["address"]]  # fmt: skip
    proc = cli(args, ray_env["env"])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["points"] == 4 and summary["runs"] == 8 and summary["failed"] == 0, summary
    assert summary["mode"] == "min" and summary["best_seeds"] == "2/2"
    assert summary["command"].startswith("python algos/bandit_epsilon_greedy.py ")
    assert f"--epsilon {summary['best']['epsilon']}" in summary["command"]
    lines = (out_dir / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8
    medians = {}
    for line in map(json.loads, lines):
        run_dir = line["record"]["summary"]["run_dir"]
        assert (ROOT / run_dir / "summary.json").exists(), run_dir  # came back from the worker
        medians.setdefault(json.dumps(line["point"], sort_keys=True), []).append(
            line["record"]["summary"]["regret"]
        )
    assert summary["best_median"] == pytest.approx(min(statistics.median(v) for v in medians.values()))
    assert (out_dir / "sweep.png").stat().st_size > 0 and "| epsilon | num_arms |" in (
        out_dir / "sweep.md"
    ).read_text()

    again = cli(args, ray_env["env"])  # resumed: every run is in results.jsonl already
    assert "0 to run, 8 already in" in again.stderr
    assert len((out_dir / "results.jsonl").read_text().splitlines()) == 8
    assert json.loads(again.stdout.strip().splitlines()[-1]) == summary


def test_failed_and_killed_runs_are_reported_and_the_others_finish(ray_env, out_dir):
    args = ["benchmark/sweep.py", "bandit_epsilon_greedy", "--param", "total-steps=200,-5,10000000",
            "--seeds", "1", "--fixed", "--num-runs 4 --eval-episodes 2", "--figure", "regret",
            "--timeout", "60", "--out", str(out_dir), "--ray-address", ray_env["address"]]  # fmt: skip
    start = time.time()
    proc = cli(args, ray_env["env"])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["points"] == 3 and summary["failed"] == 2, summary
    assert summary["best"] == {"total_steps": 200}
    report = (out_dir / "sweep.md").read_text()
    assert "--total-steps must be" in report, report  # the failed run's own error line
    # the killed run, with its reason: "--timeout 60 s reached, sent SIGTERM" (or Ray's, had Ray killed it)
    assert '- {"total_steps": 10000000} seed 1: ' in report, report
    assert time.time() - start < 400

    kept = cli([*args, "--keep-failed"], ray_env["env"])
    assert "0 to run, 3 already in" in kept.stderr
    retried = cli([*args, "--timeout", "1"], ray_env["env"])  # the last --timeout counts
    assert "2 to run, 1 already in" in retried.stderr  # the finished run is not run again
