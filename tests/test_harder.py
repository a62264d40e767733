"""benchmark/harder.toml and benchmark/harder.py: every documented flag set parses with its file's own
arguments and runs on an environment the smoke tests cover; the results page and the algorithm pages
are made from the same tasks, so a command in the docs is the command that was measured."""

import json
import subprocess
import sys

import gymnasium as gym
import pytest
from conftest import ROOT, STEMS, load_algo

sys.path.insert(0, str(ROOT / "benchmark"))
sys.path.insert(0, str(ROOT / "docs"))
import harder  # noqa: E402
import hooks  # noqa: E402
from peer_sb3 import ALGOS  # noqa: E402
from test_environments import CASES  # noqa: E402

TASKS, THRESHOLDS = harder.load_tasks()
PEERS = set(ALGOS)  # benchmark/peer_sb3.py --algo
NO_PEERS = "the peers ({}): pip install -r benchmark/requirements.txt"


@pytest.mark.parametrize("task", TASKS, ids=harder.task_name)
def test_every_task_parses_with_its_files_arguments(task):
    import tyro

    assert task["algo"] in STEMS, f"{harder.task_name(task)}: no algos/{task['algo']}.py"
    assert (task["algo"], task["env"]) in CASES, "tests/test_environments.py must smoke-test this environment"
    args = tyro.cli(load_algo(task["algo"]).Args, args=harder.command(task).split()[2:])
    assert args.env_id == task["env"]
    assert args.total_steps == harder.budget(task) > 0
    assert task.get("peer") in PEERS | {None}, task


@pytest.mark.parametrize("task", [t for t in TASKS if t.get("peer")], ids=harder.task_name)
def test_every_peer_has_a_zoo_entry_this_script_can_apply(task):
    """The peer's rl-zoo3 entry exists (or is `none`, SB3's defaults), asks for nothing peer_sb3.py does not
    apply, and its policy_kwargs evaluate (the HalfCheetah entry names nn.ReLU)."""
    pytest.importorskip("rl_zoo3", reason=NO_PEERS.format("rl-zoo3"))
    import peer_sb3

    hp = peer_sb3.zoo_hyperparams(task["peer"], task.get("zoo_env") or task["env"])
    if "policy_kwargs" in hp:
        assert isinstance(peer_sb3.policy_kwargs(hp["policy_kwargs"]), dict)


def test_tasks_are_unique_and_thresholds_are_for_their_environments():
    names = [harder.task_name(t) for t in TASKS]
    assert len(names) == len(set(names)), names
    assert set(THRESHOLDS) <= {t["env"] for t in TASKS}, THRESHOLDS


def test_thresholds_are_gymnasiums_registered_reward_thresholds():
    for env, value in THRESHOLDS.items():
        assert value == gym.spec(env).reward_threshold, env


def test_a_task_without_a_budget_is_refused():
    with pytest.raises(ValueError, match="--total-steps"):
        harder.budget({"algo": "ppo_cartpole", "env": "Acrobot-v1", "flags": "--gamma 0.99"})


def test_jobs_give_the_peer_the_same_budget_threshold_and_evaluation():
    task = {"algo": "ppo_cartpole", "env": "Acrobot-v1", "flags": "--total-steps 1234", "peer": "ppo",
            "zoo_env": "none"}  # fmt: skip
    ours, peer = harder.make_jobs([task], {"Acrobot-v1": -100.0}, [7], "w", peers=True)
    assert ours["cmd"][:4] == ["python", "algos/ppo_cartpole.py", "--env-id", "Acrobot-v1"]
    assert ours["cmd"][ours["cmd"].index("--seed") + 1] == "7" and ours["threshold"] == -100.0
    assert ours["cmd"][ours["cmd"].index("--eval-episodes") + 1] == str(harder.EVAL_EPISODES)
    assert peer["peer"] and peer["name"] == "sb3_ppo@Acrobot-v1" and peer["threshold"] == -100.0
    cmd = peer["cmd"]
    assert cmd[cmd.index("--total-steps") + 1] == "1234" and cmd[cmd.index("--zoo-env") + 1] == "none"
    assert cmd[cmd.index("--eval-episodes") + 1] == str(harder.EVAL_EPISODES)
    assert len(harder.make_jobs([task], {}, [1, 2], "w", peers=False)) == 2


def fake_episodes(reach: int | None) -> list[list[float]]:
    """Ten training episodes whose mean first reaches -100 at step `reach` (never where None)."""
    return [[reach - 9 + k, 1.0, 0.0] for k in range(10)] if reach else [[k, 1.0, -500.0] for k in range(10)]


def fake_result(name: str, evals: list[float], steps: list[int | None]) -> dict:
    # steps_to_threshold as recorded at run time is stale on purpose: the page recomputes it from the episodes
    records = [{"name": name, "seed": i + 1, "steps_to_threshold": 1, "seconds_to_threshold": 1.0,
                "summary": {"eval_return_mean": e}, "episodes": fake_episodes(s)}
               for i, (e, s) in enumerate(zip(evals, steps))]  # fmt: skip
    records.append({"name": name, "seed": len(evals) + 1, "error": "exit status 1: boom"})
    return {"name": name, "date": "2026-01-01", "machine": "test", "records": records}


def test_page_and_algorithm_block_come_from_the_results(tmp_path):
    task = {"algo": "ppo_cartpole", "env": "Acrobot-v1", "flags": "--total-steps 1000", "peer": "ppo"}
    (tmp_path / "ppo_cartpole@Acrobot-v1.json").write_text(
        json.dumps(fake_result("ppo_cartpole@Acrobot-v1", [-90.0, -120.0, -80.0], [500, None, 400]))
    )
    (tmp_path / "sb3_ppo@Acrobot-v1.json").write_text(
        json.dumps(fake_result("sb3_ppo@Acrobot-v1", [-300.0, -250.0, -200.0], [None, None, None]))
    )
    ours, peer = harder.read_results(tmp_path, task, {"Acrobot-v1": -100.0})
    assert ours["eval_median"] == -90.0 and ours["eval_worst"] == -120.0 and ours["finished"] == 3
    assert ours["reached"] == 2 and ours["steps_to_threshold"] == 450 and len(ours["seeds"]) == 4
    assert peer["reached"] == 0 and peer["eval_median"] == -250.0
    docs = tmp_path / "docs"
    docs.mkdir()
    harder.write_page(tmp_path, docs, [task], {"Acrobot-v1": -100.0})
    for name in ("harder.md", "harder.zh.md"):
        page = (docs / name).read_text()
        assert "| [`ppo_cartpole`](algorithms/ppo_cartpole.md) | Acrobot-v1 | `--total-steps 1000` |" in page
        assert "-90.0 (-120.0)" in page and "2/4, 450" in page and "-250.0 (-300.0)" in page, page


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_algorithm_pages_list_every_task_command(lang):
    """The Results block of each page that has tasks carries their exact commands (docs/hooks.py)."""
    for stem in sorted({t["algo"] for t in TASKS}):
        block = hooks.results(stem, lang)
        for task in (t for t in TASKS if t["algo"] == stem):
            assert f"    {harder.command(task)}\n" in block, (stem, task["env"])
    assert harder.page_block("bandit_ucb", lang) == ""


def test_the_page_in_docs_is_current(tmp_path):
    """docs/harder.md (+ .zh.md) is what `benchmark/harder.py --report-only` makes of the saved results."""
    harder.write_page(ROOT / "benchmark" / "results" / "harder", tmp_path, TASKS, THRESHOLDS)
    for name in ("harder.md", "harder.zh.md"):
        assert (ROOT / "docs" / name).read_text() == (tmp_path / name).read_text(), (
            f"docs/{name} is stale: python benchmark/harder.py --report-only"
        )


def test_peer_is_evaluated_on_the_files_start_states(tmp_path):
    """peer_sb3.py --eval-episodes: the deterministic policy's returns after a tiny training run."""
    pytest.importorskip("stable_baselines3", reason=NO_PEERS.format("stable-baselines3"))
    pytest.importorskip("rl_zoo3", reason=NO_PEERS.format("rl-zoo3"))
    out = subprocess.run(
        [sys.executable, "benchmark/peer_sb3.py", "--algo", "ppo", "--env-id", "Acrobot-v1", "--seed", "3",
         "--out", str(tmp_path / "peer"), "--total-steps", "64", "--eval-episodes", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["eval_episodes"] == 2 and -500.0 <= summary["eval_return_mean"] <= 0.0, summary
    assert summary["zoo_env"] == "Acrobot-v1" and summary["hyperparams"]["normalize"] == "True", summary


def test_a_stopped_benchmark_keeps_the_tasks_it_finished(tmp_path, monkeypatch):
    """Each task's results file is written as soon as its last seed is in, not only when every run is."""
    finished = []

    class StoppedAfterOneTask:
        def describe(self):
            return "test"

        def run(self, jobs, on_record):
            first = [job for job in jobs if job["name"] == jobs[0]["name"]]
            finished.append(jobs[0]["name"])
            for job in reversed(first):  # the first task's seeds, out of order, then Ctrl-C
                on_record(
                    job, {"name": job["name"], "seed": job["seed"], "summary": {"eval_return_mean": 1.0}}
                )
            raise KeyboardInterrupt

        def close(self):
            pass

    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(harder, "ROOT", tmp_path)
    monkeypatch.setattr(harder.run, "make_dispatcher", lambda cli: StoppedAfterOneTask())
    argv = ["harder.py", "--no-peers", "--tasks", "dqn_cartpole@Acrobot-v1", "ppo_cartpole@Acrobot-v1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(KeyboardInterrupt):
        harder.main()
    results = tmp_path / "benchmark" / "results" / "harder"
    assert [p.name for p in results.iterdir()] == [f"{finished[0]}.json"]  # no other task, no temporary file
    records = json.loads((results / f"{finished[0]}.json").read_text())["records"]
    assert [r["seed"] for r in records] == [1, 2, 3]
