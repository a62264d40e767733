"""Tests every file in algos/ gets, found on disk so that a new file cannot escape them.

CONVENTIONS.md section 7: smoke (with at least one update), --help, determinism, bad input
(section 6), style (SHARED blocks, documented Args, no repo-local imports, line cap, docs page).
"""

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ALGOS, ROOT, STEMS, TIME_KEYS, assert_summary, load_algo, run_algo, smoke_args

PROBABILITY_FIELDS = {"gamma", "epsilon", "tau", "gae_lambda", "start_e", "end_e", "exploration_fraction"}
POSITIVE_INT_FIELDS = {"batch_size", "num_envs", "num_minibatches", "buffer_size", "hidden_dim"}


def args_fields(stem: str) -> dict[str, ast.AnnAssign]:
    tree = ast.parse((ROOT / "algos" / f"{stem}.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    return {n.target.id: n for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_every_file_has_a_smoke_budget_and_docs_page():
    assert STEMS, "no algorithm files found"
    for stem in STEMS:
        assert (ROOT / "tests" / "smoke" / f"{stem}.args").exists(), stem
        assert (ROOT / "docs" / "algorithms" / f"{stem}.md").exists(), stem


# ---------------------------------------------------------------- smoke and determinism
@pytest.mark.parametrize("stem", STEMS)
def test_smoke(stem, runs_dir):
    summary = run_algo(stem, smoke_args(stem), runs_dir)
    assert_summary(summary)
    assert summary["num_updates"] >= 1, "the smoke budget must reach at least one update"
    assert summary["algo"] == stem
    assert summary["interrupted"] is False
    run_dir = summary["run_dir"]
    assert os.path.dirname(run_dir) == str(runs_dir)
    assert json.loads(open(os.path.join(run_dir, "summary.json")).read()) == summary
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))


@pytest.mark.parametrize("stem", STEMS)
def test_same_seed_same_summary(stem, tmp_path):
    first = run_algo(stem, smoke_args(stem), tmp_path / "a")
    second = run_algo(stem, smoke_args(stem), tmp_path / "b")
    strip = lambda s: {k: v for k, v in s.items() if k not in TIME_KEYS}  # noqa: E731
    assert strip(first) == strip(second)


@pytest.mark.parametrize("stem", STEMS)
def test_help_documents_every_field(stem):
    out = subprocess.run(
        [sys.executable, f"algos/{stem}.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for name in args_fields(stem):
        assert "--" + name.replace("_", "-") in out.stdout, f"--help does not show {name}"


# ---------------------------------------------------------------- bad input (section 6)
def bad_inputs(stem: str, tmp_path) -> list[tuple[list[str], str]]:
    fields = args_fields(stem)
    budget = "total_steps" if "total_steps" in fields else "max_iterations"
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"this is not a model" * 10)
    cases = [
        ([f"--{budget.replace('_', '-')}", "-5"], budget.replace("_", "-")),
        (["--env-id", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["--load-model", str(tmp_path / "missing.pt")], "load-model"),
        (["--load-model", str(corrupt)], "load-model"),
        (["--eval-episodes", "0"], "eval-episodes"),
    ]
    for name in sorted(PROBABILITY_FIELDS & fields.keys()):
        cases.append(([f"--{name.replace('_', '-')}", "1.5"], name.replace("_", "-")))
    for name in sorted(POSITIVE_INT_FIELDS & fields.keys()):
        cases.append(([f"--{name.replace('_', '-')}", "0"], name.replace("_", "-")))
    return cases


@pytest.mark.parametrize("stem", STEMS)
def test_bad_input_stops_cleanly(stem, tmp_path):
    runs_dir = tmp_path / "runs"
    base = smoke_args(stem)
    for argv, expected in bad_inputs(stem, tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            run_algo(stem, base + argv, runs_dir)
        message = exit_info.value.code
        assert isinstance(message, str) and message.startswith("error:"), f"{argv}: {message!r}"
        assert "\n" not in message and expected in message, f"{argv}: {message!r}"
        assert not runs_dir.exists() or not any(runs_dir.iterdir()), f"{argv} left a run directory"


@pytest.mark.parametrize("stem", STEMS)
def test_bad_input_from_the_shell_is_one_line(stem, tmp_path):
    budget = "--total-steps" if "total_steps" in args_fields(stem) else "--max-iterations"
    out = subprocess.run(
        [sys.executable, f"algos/{stem}.py", budget, "-5", "--runs-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not any(tmp_path.iterdir())
    wrong = subprocess.run(
        [sys.executable, f"algos/{stem}.py", "--no-such-flag", "1"], cwd=ROOT, capture_output=True, text=True
    )
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr and "--no-such-flag" in wrong.stderr


# ---------------------------------------------------------------- style (sections 1-2)
def shared_blocks(path) -> dict[str, str]:
    blocks, name, lines = {}, None, []
    for line in path.read_text().splitlines():
        marker = re.match(r"\s*# == (SHARED|ALGO|ENV): (\S+) ==", line)
        if marker:
            if name:
                blocks[name] = "\n".join(lines)
            name = marker.group(2) if marker.group(1) == "SHARED" else None
            lines = []
        elif name:
            lines.append(line)
    if name:
        blocks[name] = "\n".join(lines)
    return blocks


def test_shared_blocks_are_identical():
    seen: dict[str, tuple[str, str]] = {}
    for path in ALGOS:
        for name, text in shared_blocks(path).items():
            if name in seen:
                assert text == seen[name][1], f"SHARED {name} differs between {seen[name][0]} and {path.name}"
            else:
                seen[name] = (path.name, text)
    assert "common_args" in seen and "run_helpers" in seen


@pytest.mark.parametrize("stem", STEMS)
def test_style(stem):
    path = ROOT / "algos" / f"{stem}.py"
    source = path.read_text()
    assert len(source.splitlines()) <= 400, "400 lines is the hard cap"
    tree = ast.parse(source)
    assert ast.get_docstring(tree), "module docstring"
    local = {p.stem for p in ALGOS} | {"algos", "tests", "benchmark", "conftest"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & local, "repo-local import"
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and (node.module or "").split(".")[0] not in local, "repo-local import"
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    body = cls.body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            doc = body[i + 1] if i + 1 < len(body) else None
            documented = isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
            assert documented and str(doc.value.value).strip(), f"Args.{node.target.id} has no docstring"
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "main" in names and "evaluate" in names
    assert 'if __name__ == "__main__":' in source


def test_formatted_with_ruff():
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "algos"], cwd=ROOT, capture_output=True
    )
    if ruff.returncode != 0 and b"No module named ruff" in ruff.stderr:
        pytest.skip("ruff is not installed")
    assert ruff.returncode == 0, ruff.stdout.decode()


# ---------------------------------------------------------------- outputs (section 4)
def test_track_with_wandb_offline(runs_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = run_algo("bandit_epsilon_greedy", [*smoke_args("bandit_epsilon_greedy"), "--track"], runs_dir)
    assert os.path.isdir(os.path.join(summary["run_dir"], "wandb")), "no offline W&B run was written"


def first_gym_algo() -> str:
    for stem in ("dqn_cartpole", "cliff_q_learning", "frozenlake_value_iteration"):
        if stem in STEMS:
            return stem
    pytest.skip("no gymnasium-based file yet")


def test_capture_video(runs_dir):
    stem = first_gym_algo()
    summary = run_algo(stem, [*smoke_args(stem), "--capture-video", "--eval-episodes", "1"], runs_dir)
    videos = os.path.join(summary["run_dir"], "videos")
    assert any(name.endswith(".mp4") for name in os.listdir(videos))


def test_save_then_load_only_evaluates(runs_dir):
    for stem in STEMS:
        saved = run_algo(stem, [*smoke_args(stem), "--save-model"], runs_dir / "a")
        model = [n for n in os.listdir(saved["run_dir"]) if n.startswith("model.")]
        assert model, f"{stem}: --save-model wrote nothing"
        budget = ["--total-steps", "0"] if "total_steps" in args_fields(stem) else ["--max-iterations", "0"]
        path = os.path.join(saved["run_dir"], model[0])
        loaded = run_algo(stem, [*smoke_args(stem), "--load-model", path, *budget], runs_dir / "b")
        assert loaded["total_steps"] == 0 or "iterations" in loaded
        assert loaded["eval_return_mean"] == pytest.approx(saved["eval_return_mean"]), stem


def test_ctrl_c_evaluates_and_says_interrupted(tmp_path):
    stem = "dqn_cartpole" if "dqn_cartpole" in STEMS else "bandit_epsilon_greedy"
    proc = subprocess.Popen(
        [sys.executable, f"algos/{stem}.py", "--total-steps", "10000000", "--runs-dir", str(tmp_path),
         "--eval-episodes", "1", "--save-model"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while not any(tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["interrupted"] is True and 0 < summary["total_steps"] < 10000000
    assert any(n.startswith("model.") for n in os.listdir(summary["run_dir"]))


def test_algos_import_without_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for stem in STEMS:
        load_algo(stem)
    assert not any(tmp_path.iterdir()), "importing a file must not write anything"
