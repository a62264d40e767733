"""benchmark/run.py --quick runs end to end: subprocess runs, TensorBoard parsing, report, figures;
the report's layout and paths; benchmark/sweep.py on the local thread pool (no Ray): a run killed
mid-sweep is reported and a resumed sweep does not rerun what finished. tests/test_ray.py runs
both on Ray."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT, STEMS

sys.path.insert(0, str(ROOT / "benchmark"))
from run import FAMILIES, PROFILE_WORDS, aggregate, fmt, steps_and_seconds_to, write_report  # noqa: E402


def test_threshold_uses_the_mean_of_the_last_ten_episodes():
    episodes = [(i * 10, float(i), 400.0 if i < 12 else 500.0) for i in range(30)]
    # the last-10 mean first reaches 475 when 8 of the 10 episodes score 500: episode index 19
    assert steps_and_seconds_to(episodes, 475.0) == (190, 19.0)
    assert steps_and_seconds_to(episodes[:15], 475.0) == (None, None)
    assert steps_and_seconds_to(episodes, None) == (None, None)


def quick(tmp_path, algos, *extra):
    out = subprocess.run(
        [sys.executable, "benchmark/run.py", "--quick", "--no-gifs", "--out", str(tmp_path), "--algos", *algos, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_quick_mode_end_to_end(tmp_path):
    algos = ["bandit_epsilon_greedy"] + [s for s in ("ppo_cartpole", "dqn_cartpole") if s in STEMS][:1]
    quick(tmp_path, algos, "--no-peers")
    report = (tmp_path / "benchmarks.md").read_text()
    for stem in algos:
        result = json.loads((tmp_path / "results" / f"{stem}.json").read_text())
        assert result["records"] and "summary" in result["records"][0], result
        assert f"| `{stem}` |" in report
    if len(algos) > 1:
        assert result["records"][0]["episodes"], "no training episodes were read from TensorBoard"
        assert (tmp_path / "figures" / f"bench_{algos[1]}.png").exists()


def test_quick_mode_with_a_peer(tmp_path):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("rl_zoo3")
    if "ppo_cartpole" not in STEMS:
        pytest.skip("ppo_cartpole not written yet")
    quick(tmp_path, ["ppo_cartpole"])
    assert (tmp_path / "results" / "sb3_ppo_cartpole.json").exists()


def test_results_and_report_hold_no_machine_paths():
    texts = {p.name: p.read_text() for p in (ROOT / "benchmark" / "results").glob("*.json")}
    texts["docs/benchmarks.md"] = (ROOT / "docs" / "benchmarks.md").read_text()
    texts["docs/benchmarks.zh.md"] = (ROOT / "docs" / "benchmarks.zh.md").read_text()
    for name, text in texts.items():
        assert str(ROOT) not in text, name
        paths = re.findall(r"(?<![\w.])/(?:home|root|tmp|Users|work|mnt|private|var)/[^\s\"'`]*", text)
        assert not paths, (name, paths[:3])


def test_report_has_one_table_per_family_in_curriculum_order(tmp_path):
    write_report(ROOT / "benchmark" / "results", tmp_path, None)
    report = (tmp_path / "benchmarks.md").read_text()
    sections = re.findall(r"^## (.+)$", report, flags=re.M)
    profile = PROFILE_WORDS["en"][0]  # last, once benchmark/profile_runs.py has written its result
    families = [s for s in sections if s != profile]
    assert sections == families + [profile] * (profile in sections), sections
    order = [family for family, _ in FAMILIES]
    assert families == [f for f in order if f in families] and len(families) >= 5, sections
    for title, body in zip(sections, re.split(r"^## .+$", report, flags=re.M)[1:]):
        if title == profile:
            continue
        assert body.count("python benchmark/run.py") == 1, body[:300]  # one command per table
        assert "--runs-dir" not in body
        header = next(line for line in body.splitlines() if line.startswith("| algorithm"))
        for column in ("reached threshold", "steps to thr.", "s to thr."):
            assert column in header
    # the Chinese twin: the same sections, rows, commands and figures, in Chinese words
    twin = (tmp_path / "benchmarks.zh.md").read_text()
    same = re.compile(r"^(?:\| `.*|python benchmark/run\.py.*|!\[.*\]\((figures/[^)]+)\))$", flags=re.M)
    assert [m.group(1) or m.group(0) for m in same.finditer(twin)] == [
        m.group(1) or m.group(0) for m in same.finditer(report)
    ]
    assert len(re.findall(r"^## ", twin, flags=re.M)) == len(sections)
    assert re.search(r"[\u4e00-\u9fff]", twin)


def test_aggregate_tolerates_null_returns_and_failed_runs():
    summary = {"env_id": "CartPole-v1", "eval_return_mean": None, "steps_per_second": 10.0}
    records = [
        {"seed": 1, "summary": summary, "steps_to_threshold": None, "seconds_to_threshold": None},
        {"seed": 2, "summary": {**summary, "eval_return_mean": 480.0}, "steps_to_threshold": 900,
         "seconds_to_threshold": 3.0},
        {"seed": 3, "error": "killed by SIGKILL"},
        {"seed": 4, "error": "interrupted before its budget: stopped by a signal", "partial": summary},
    ]  # fmt: skip
    row = aggregate({"records": records})
    assert row["seeds"] == 2 and row["failed"] == 2 and row["reached"] == "1/2"
    assert row["eval_median"] == 480.0 and row["steps_to_threshold"] == 900
    assert aggregate({"records": records[2:]})["eval_median"] is None
    assert fmt(None) == "–" and fmt(12345) == "12,345"


def fake_record(name, seed, summary=None, reached=None, **extra):
    """One run's record as finish() writes it; `reached`: (steps, seconds) to threshold."""
    record = {"name": name, "seed": seed, "command": f"algos/{name}.py --seed {seed}", "wall_seconds": 1.0}
    if summary is None:
        return {**record, "error": "killed by SIGKILL", **extra}
    steps, seconds = reached or (None, None)
    episodes = [[100 * i, float(i), 10.0] for i in range(3)]
    return {**record, "steps_to_threshold": steps, "seconds_to_threshold": seconds, "summary": summary,
            "episodes": episodes, **extra}  # fmt: skip


def test_readme_tables_from_a_tiny_results_folder(tmp_path):
    """One table per family with its own measure; seeds counted from the records; no ratio unless
    both the file and its peer reached the threshold on every seed; failed runs and null returns."""
    bandit = {
        "env_id": "BernoulliBandit-v0",
        "total_steps": 100,
        "eval_episodes": 4,
        "eval_return_std": 0.02,
        "best_arm_expected_reward": 0.9,
        "steps_per_second": 5.0,
    }
    cliff = {
        "env_id": "CliffWalking-v1",
        "eval_return_mean": -13.0,
        "eval_episodes": 1,
        "steps_per_second": 9.0,
    }
    cart, pend = {"env_id": "CartPole-v1", "eval_return_mean": 500.0}, {"env_id": "Pendulum-v1"}
    results = {
        "bandit_ucb": [fake_record("bandit_ucb", s, {**bandit, "regret": r, "eval_return_mean": 0.88})
                       for s, r in ((1, 30.0), (2, 50.0))],
        "cliff_value_iteration": [fake_record("cliff_value_iteration", s, {**cliff, "iterations": 15,
                                  "num_updates": 15, "success_rate": 1.0}) for s in (1, 2)],
        "cliff_q_learning": [fake_record("cliff_q_learning", 1, {**cliff, "path_length": 13, "steps_to_target": 900}),
                             fake_record("cliff_q_learning", 2, {**cliff, "path_length": 13, "steps_to_target": None})],
        "ppo_cartpole": [fake_record("ppo_cartpole", s, cart, (1000, 4.0)) for s in (1, 2)],
        "sb3_ppo_cartpole": [fake_record("sb3_ppo_cartpole", 1, {"env_id": "CartPole-v1"}, (800, 9.0)),
                             fake_record("sb3_ppo_cartpole", 2, {"env_id": "CartPole-v1"})],
        "sac_pendulum": [fake_record("sac_pendulum", s, {**pend, "eval_return_mean": -150.0}, (500, 2.0))
                         for s in (1, 2)],
        "sb3_sac_pendulum": [fake_record("sb3_sac_pendulum", s, pend, (600, 6.0)) for s in (1, 2)],
        "dqn_cartpole": [fake_record("dqn_cartpole", 1, {**cart, "eval_return_mean": None}),
                         fake_record("dqn_cartpole", 2, None)],
    }  # fmt: skip
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    for name, records in results.items():
        result = {"name": name, "invocation": "python benchmark/run.py --seeds 1 2", "date": "2026-01-01",
                  "machine": "x86_64, 2 cores, 2 worker(s)", "records": records}  # fmt: skip
        (results_dir / f"{name}.json").write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nbefore\n<!-- results:start -->\nold table\n<!-- results:end -->\n\nafter\n")
    write_report(results_dir, tmp_path / "docs", readme)
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n<!-- results:start -->\n") and text.endswith(
        "<!-- results:end -->\n\nafter\n"
    )
    block = text.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    assert "old table" not in block and "steps/s" not in block
    sections = dict(re.findall(r"^### ([^\n]+)\n(.*?)(?=^### |\Z)", block, flags=re.M | re.S))
    on_disk = [family for family, stems in FAMILIES if any(s in STEMS for s in stems)]
    assert list(sections) == on_disk, list(sections)  # one table per family, in the curriculum's order
    for family, body in sections.items():
        assert (
            len(re.findall(r"^\| --- \|", body, flags=re.M)) == 1
            and body.count("python benchmark/run.py") == 1
        ), (family, body)
    for stem in STEMS:
        if any(stem in stems for _, stems in FAMILIES):
            assert f"[`{stem}`](docs-md/algorithms/{stem}.md)" in block, stem

    # seeds: counted from the records (2 here), not the 3 or 5 of a default
    assert "From 2 seeds per algorithm (1, 2)" in sections["Bandits"]
    assert "--seeds 1 2 --algos bandit_ucb" in sections["Bandits"]
    assert "Not benchmarked yet" in sections["Beyond online RL"]

    def row(family, stem):
        line = next(line for line in sections[family].splitlines() if line.startswith(f"| [`{stem}`]"))
        return [cell.strip() for cell in line.strip("|").split("|")]

    bandit_row = row("Bandits", "bandit_ucb")
    assert bandit_row[1:] == ["40.0 (50.0)", "0.880 (0.880)", "0.900"], bandit_row  # regret: worst = max
    dp = row("Dynamic programming", "cliff_value_iteration")
    assert dp[2:] == ["greedy return", "-13.0 (-13.0)", "-13.0", "15", "15"], dp
    td = row("Tabular TD", "cliff_q_learning")
    assert td[2] == "-13.0 (-13.0)" and td[5] == "900 (1/2)", td

    # a peer that reached the threshold on 1 seed of 2: its figure and count, no ratio
    ppo = row("Policy gradient", "ppo_cartpole")
    assert ppo[3:6] == ["2/2", "1,000", "4.0"] and ppo[6] == "1/2; 800 steps; 9.0 s" and ppo[7] == "–", ppo
    # both on every seed: the ratio of the median seconds
    sac = row("Continuous control", "sac_pendulum")
    assert sac[6] == "2/2; 600 steps; 6.0 s" and sac[7] == "3.0x", sac
    # a failed seed and a null evaluation return: counted, not averaged
    assert "median (worst) is over the seeds that finished" in sections["Value-based deep RL"]
    dqn = row("Value-based deep RL", "dqn_cartpole")
    assert dqn[1] == "1 of 2 (1 failed)" and dqn[3] == "–" and dqn[4] == "0/2", dqn


def sweep_processes(marker: str) -> list[int]:
    """Pids of the runs this test's sweep started (their command line holds its unique folder)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(marker in part for part in cmdline) and "10000000" in cmdline:
            pids.append(int(pid))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the run to kill in /proc")
def test_sweep_reports_a_run_killed_mid_sweep_and_resumes(tmp_path):
    out = tmp_path / f"sweep-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "benchmark/sweep.py", "bandit_epsilon_greedy", "--param", "total-steps=200,10000000",
            "epsilon=0.1", "--seeds", "1", "--fixed", "--num-runs 4 --eval-episodes 2", "--figure", "regret",
            "--out", str(out), "--workers", "2"]  # fmt: skip
    sweep = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (pids := sweep_processes(str(out))) and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.2)
    assert pids, "the long run never started"
    time.sleep(1.0)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["failed"] == 1 and summary["best"] == {"total_steps": 200, "epsilon": 0.1}, summary
    assert "killed by SIGKILL" in (out / "sweep.md").read_text()

    kept = subprocess.run([*args, "--keep-failed"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "0 to run, 2 already in" in kept.stderr
    retried = subprocess.run([*args, "--timeout", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "1 to run, 1 already in" in retried.stderr  # only the killed run runs again
    assert "--timeout 1 s reached" in (out / "sweep.md").read_text()


def test_wall_time_times_every_numpy_only_file(tmp_path):
    """benchmark/wall_time.py: its default list is every file without torch, and one run of one file is recorded."""
    import wall_time

    numpy_files = [
        s for s in STEMS if not re.search(r"^import torch\b", (ROOT / "algos" / f"{s}.py").read_text(), re.M)
    ]
    assert wall_time.numpy_only() == sorted(numpy_files) and len(numpy_files) >= 14
    out = tmp_path / "wall.json"
    cmd = [
        sys.executable,
        "benchmark/wall_time.py",
        "--algos",
        "cliff_value_iteration",
        "--repeats",
        "1",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    [row] = json.loads(out.read_text())["files"].values()
    assert 0 < row["median_seconds"] == row["worst_seconds"] and len(row["seconds"]) == 1


def test_every_peer_that_was_run_is_on_its_files_page():
    """A file's peer is found by the peer's own name (sb3_a2c_cartpole for actor_critic_cartpole), not by the
    file's: the page's peer sentence reads every peer's results/sb3_*.json that exists."""
    sys.path.insert(0, str(ROOT / "docs"))
    import hooks
    import run

    results = {p.stem: None for p in (ROOT / "benchmark" / "results").glob("*.json")}
    ran = [stem for stem in run.PEERS if run.peer_of(stem, results)]
    assert "sb3_a2c_cartpole" in results and "actor_critic_cartpole" in ran
    for stem in ran:
        assert hooks.peer_sentence(stem, zh=False), f"{stem}: its peer's results are not on its page"
