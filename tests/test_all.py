"""Tests every file in algos/ gets, found on disk so that a new file cannot escape them.

CONVENTIONS.md section 7: smoke (with at least one update), --help, determinism, bad input and stops
(section 6: a matrix over every field of every Args), style (SHARED blocks, documented Args, no repo-local
imports, reading order, line caps, no torch in numpy files, docs page), diff budgets against each file's parent,
and the sabotage declarations (tests/sabotage/<stem>.toml; tests/sabotage.py runs them).
"""

import ast
import dataclasses
import difflib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import typing
import warnings
from pathlib import Path

import pytest
import tomllib
from conftest import (
    ALGOS,
    ROOT,
    STEMS,
    TIME_KEYS,
    assert_summary,
    default_signals,
    load_algo,
    run_algo,
    smoke_args,
)

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
    with warnings.catch_warnings(record=True) as caught:  # a user sees each one on stderr
        warnings.simplefilter("always")
        summary = run_algo(stem, smoke_args(stem), runs_dir)
    ours = [f"line {w.lineno}: {w.message}" for w in caught if os.path.basename(w.filename) == f"{stem}.py"]
    assert not ours, f"warnings raised at the file's own lines: {ours}"
    assert_summary(summary)
    assert summary["num_updates"] >= 1, "the smoke budget must reach at least one update"
    assert summary["algo"] == stem
    assert summary["interrupted"] is False
    run_dir = summary["run_dir"]
    assert os.path.dirname(run_dir) == str(runs_dir)
    assert json.loads(open(os.path.join(run_dir, "summary.json")).read()) == summary
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        run_dir
    )  # TensorBoard's reader: it stops at the first record whose CRC is wrong
    events.Reload()
    assert events.Tags()["scalars"], f"TensorBoard reads no scalar: {events.Tags()}"


def read_event_records(path: Path) -> list[tuple[str, int]]:
    """(tag, step) of every scalar in an event file, asserting that each record's CRCs equal tensorboard's
    own masked CRC-32C and that the last record ends exactly at the end of the file."""
    import struct

    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data, at, tags = path.read_bytes(), 0, []
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[at + 8 : at + 12])[0] == masked_crc32c(header)
        record = data[at + 12 : at + 12 + length]
        assert struct.unpack("<I", data[at + 12 + length : at + 16 + length])[0] == masked_crc32c(record)
        tags += [
            (v.tag, event.step) for event in [event_pb2.Event.FromString(record)] for v in event.summary.value
        ]
        at += 16 + length
    assert at == len(data), "a record is cut off at the end of the file"
    return tags


def test_event_file_is_whole_and_every_crc_checks(runs_dir):
    """EventWriter (run_helpers, the same block in every file): records end exactly at the end of the file, each
    CRC equals tensorboard's own masked CRC-32C, and every scalar the loop logged is there."""
    summary = run_algo("bandit_ucb", ["--total-steps", "1000", "--num-runs", "5"], runs_dir)
    [name] = [n for n in os.listdir(summary["run_dir"]) if n.startswith("events.out.tfevents")]
    tags = read_event_records(Path(summary["run_dir"], name))
    assert [step for tag, step in tags if tag == "charts/regret"] == list(range(100, 1001, 100))
    assert ("charts/SPS", 1000) in tags


def test_a_killed_run_leaves_every_logged_record_whole(tmp_path):
    """Every scalar that training logged is on disk while the process still runs (it is then SIGKILLed during
    its evaluation: no handler or exit code runs) and every record is whole and readable. EventWriter writes
    unbuffered; a buffered file would hold the last records in memory, never written when the process dies."""
    cmd = [sys.executable, "algos/dqn_cartpole.py", "--total-steps", "2000", "--log-frequency", "100"]
    cmd += ["--eval-episodes", "1000000", "--no-progress", "--runs-dir", str(tmp_path)]  # evaluates for hours
    proc, tags = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL), []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and ("charts/SPS", 2000) not in tags:
            time.sleep(0.1)
            files = list(tmp_path.glob("*/events.out.tfevents.*"))
            try:
                tags = read_event_records(files[0]) if files else []
            except Exception:  # read while a record was being written: read again
                tags = []
        assert proc.poll() is None, "the run ended before it was killed"
    finally:
        proc.kill()  # SIGKILL: no handler or exit code of the run gets to write anything
        proc.wait()
    [path] = tmp_path.glob("*/events.out.tfevents.*")
    steps = [step for tag, step in read_event_records(path) if tag == "charts/SPS"]
    assert steps == list(range(100, 2001, 100)), (
        "not every record that training logged reached the file in 60 s"
    )


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
    blocks = shared_blocks(path)
    own = len(source.splitlines()) - sum(
        len(blocks[n].splitlines()) + 1 for n in EVERY_FILE_BLOCKS if n in blocks
    )
    assert own <= 400, f"{own} lines of its own (the blocks every file shares aside): 400 is the hard cap"
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
    logs = list(Path(summary["run_dir"], "wandb").rglob("*.wandb"))  # the offline run's record log
    assert logs and b"charts/regret" in logs[0].read_bytes(), "the scalars never reached W&B"
    assert b"global_step" in logs[0].read_bytes(), "no step metric: W&B would plot against its own row count"


def test_a_tracked_run_that_fails_still_sends_its_last_wandb_row(tmp_path):
    """EventWriter gathers one step's scalars into a W&B row and sends it when the next step begins; a run
    that stops with fail() (or an exception) before that must still send the row it holds, at exit. A stand-in
    for the wandb module records the rows: an offline wandb run writes its log from a service process of its
    own, which under a busy test suite sometimes recorded nothing at all, rows sent during the run included."""
    code = (
        "import runpy\n"
        "module = runpy.run_path('algos/bandit_ucb.py')\n"
        "class Wandb:  # what EventWriter uses of the wandb module: run (None once finished) and log\n"
        "    run = 'open'\n"
        "    def log(self, row): print('logged', sorted(row), flush=True)\n"
        f"writer = module['EventWriter']({str(tmp_path)!r}, Wandb())\n"
        "writer.add_scalar('charts/sent_on_the_next_step', 1.0, 100)\n"
        "writer.add_scalar('charts/held_at_the_failure', 2.0, 200)\n"
        "module['fail']('a failure mid-run')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "error: a failure mid-run" in out.stderr, out.stderr[-2000:]
    logged = out.stdout.splitlines()
    assert "logged ['charts/sent_on_the_next_step', 'global_step']" in logged, out.stdout
    assert "logged ['charts/held_at_the_failure', 'global_step']" in logged, (
        "the row held at the failure was not sent"
    )


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
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals,
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


# ---------------------------------------------------------------- every field of every Args (section 6)
def uses_torch(stem: str) -> bool:
    source = (ROOT / "algos" / f"{stem}.py").read_text()
    return bool(re.search(r"^import torch\b", source, re.M))


def budget_flag(stem: str) -> str:
    return "--total-steps" if "total_steps" in args_fields(stem) else "--max-iterations"


def field_matrix(stem: str) -> list[tuple[str, list[str], bool]]:
    """(case name, argv, must_fail) for every field, by its type: NaN and inf in any float (also inside a
    tuple) must be refused; -1, 0 and 2**62 in any int must be refused with one line or run to a clean end."""
    module = load_algo(stem)
    hints = typing.get_type_hints(module.Args)
    cases = []
    for field in dataclasses.fields(module.Args):
        flag, hint = "--" + field.name.replace("_", "-"), hints[field.name]
        if hint is float:
            cases += [(f"{flag} {v}", [flag, v], True) for v in ("nan", "inf", "-inf")]
        elif typing.get_origin(hint) is tuple and float in typing.get_args(hint):
            default = [str(x) for x in field.default]
            cases += [(f"{flag} nan ...", [flag, "nan", *default[1:]], True)]
        elif hint is int and field.name != "seed":
            cases += [(f"{flag} {v}", [flag, str(v)], False) for v in (-1, 0, 2**62)]
    cases += [(f"--seed {v}", ["--seed", str(v)], True) for v in (-1, 2**32)]
    return cases


def run_until_stopped(stem: str, argv: list[str], runs_dir, every: float = 2.0):
    """Run in-process; a run that is still going after `every` seconds is sent SIGTERM (again every `every`
    seconds), which must end it cleanly. Returns the summary or raises SystemExit like main()."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # until main() catches it
    done = threading.Event()

    def nag():
        while not done.wait(every):
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=nag, daemon=True)
    thread.start()
    try:
        return run_algo(stem, argv, runs_dir)
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGTERM, previous)


def assert_no_half_written_files(runs_dir) -> None:
    leftovers = [p for p in runs_dir.rglob("*.tmp")] if runs_dir.exists() else []
    assert not leftovers, f"half-written files: {leftovers}"


@pytest.mark.parametrize("stem", STEMS)
def test_every_field_bad_value_is_one_line_or_a_clean_run(stem, tmp_path):
    base = smoke_args(stem)
    for i, (name, argv, must_fail) in enumerate(field_matrix(stem)):
        runs_dir = tmp_path / f"case{i}"
        try:
            summary = run_until_stopped(stem, [*base, *argv], runs_dir)
        except SystemExit as exit_info:
            message = exit_info.code
            assert isinstance(message, str) and message.startswith("error:"), f"{name}: {message!r}"
            assert "\n" not in message, f"{name}: {message!r}"
            flag = argv[0].lstrip("-")
            assert flag in message or "--" in message, f"{name}: the message names no flag: {message!r}"
            assert not runs_dir.exists() or not any(runs_dir.iterdir()), f"{name} left a run directory"
            continue
        assert not must_fail, f"{name} was accepted"
        json.dumps(summary, allow_nan=False)  # the summary is valid JSON
        assert summary["algo"] == stem, name
        assert_no_half_written_files(runs_dir)


@pytest.mark.parametrize("stem", STEMS)
def test_unwritable_runs_dir_is_one_line(stem, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for runs_dir in (a_file, a_file / "under"):
        with pytest.raises(SystemExit) as exit_info:
            run_algo(stem, smoke_args(stem), runs_dir)
        message = exit_info.value.code
        assert isinstance(message, str) and message.startswith("error:") and "runs-dir" in message, message
    assert a_file.read_text() == "not a folder"


def test_runs_started_side_by_side_get_their_own_directories(tmp_path, monkeypatch):
    """A sweep starts runs of one seed in the same second; each one checking for the name before the others
    create it must still end in a directory of its own (run_helpers is one block in every file)."""
    algo = load_algo("bandit_ucb")
    args = algo.Args(runs_dir=str(tmp_path), progress=False)
    monkeypatch.setattr(algo.time, "time", lambda: 1.8e9)  # the same second
    monkeypatch.setattr(algo.signal, "signal", lambda *a: None)  # leave pytest's handlers alone
    real_exists = os.path.exists
    monkeypatch.setattr(
        algo.os.path, "exists", lambda p: False if str(tmp_path) in str(p) else real_exists(p)
    )
    dirs = []
    for _ in range(3):  # every run saw the name free, as a parallel run does before the others create it
        run_dir, writer, _ = algo.start_run(args, args.env_id)
        writer.close()
        dirs.append(os.path.basename(run_dir))
    assert dirs[1:] == [f"{dirs[0]}-1", f"{dirs[0]}-2"], dirs


@pytest.mark.parametrize("stem", STEMS)
def test_nan_model_file_is_refused(stem, tmp_path):
    saved = run_algo(stem, [*smoke_args(stem), "--save-model"], tmp_path / "a")
    model = next(p for p in os.listdir(saved["run_dir"]) if p.startswith("model."))
    path = os.path.join(saved["run_dir"], model)
    bad = tmp_path / model
    if model.endswith(".pt"):
        import torch

        state = torch.load(path, weights_only=True)

        def poison(x):
            if isinstance(x, dict):
                return {k: poison(v) for k, v in x.items()}
            return torch.full_like(x, math.nan) if torch.is_tensor(x) and x.is_floating_point() else x

        torch.save(poison(state), bad)
    else:
        import numpy as np

        with np.load(path) as data:
            arrays = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in data.items()}
        if not any(v.dtype.kind == "f" for v in arrays.values()):
            pytest.skip("no float arrays in this model")
        np.savez(bad, **arrays)
        bad = tmp_path / (model if model.endswith(".npz") else model + ".npz")
    with pytest.raises(SystemExit) as exit_info:
        run_algo(stem, [*smoke_args(stem), "--load-model", str(bad)], tmp_path / "b")
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith("error:") and "load-model" in message, message


def stoppable(stem: str) -> bool:
    return "total_steps" in args_fields(stem)


@pytest.mark.parametrize("stem", [s for s in STEMS if stoppable(s)])
def test_sigterm_then_ctrl_c_twice_leaves_a_result(stem, tmp_path):
    """SIGTERM in training, Ctrl-C in the evaluation, a second Ctrl-C while saving: exit 0, summary, model."""
    long = [
        "--total-steps",
        "10000000",
        "--eval-episodes",
        "100000",
        "--save-model",
        "--runs-dir",
        str(tmp_path),
    ]
    proc = subprocess.Popen(
        [sys.executable, f"algos/{stem}.py", *smoke_args(stem), *long, "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals,
    )  # fmt: skip
    deadline = time.time() + 120
    while not any(tmp_path.iterdir()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    for sig, pause in ((signal.SIGTERM, 1.0), (signal.SIGINT, 1.5), (signal.SIGINT, 0.3)):
        time.sleep(pause)
        if proc.poll() is None:
            proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    run_dir = ROOT / summary["run_dir"] if not os.path.isabs(summary["run_dir"]) else summary["run_dir"]
    assert json.loads(open(os.path.join(run_dir, "summary.json")).read()) == summary
    assert any(n.startswith("model.") for n in os.listdir(run_dir)), "--save-model wrote nothing"
    assert_no_half_written_files(tmp_path)


# ---------------------------------------------------------------- lean files (issue 10)
NUMPY_FAMILIES = {"bandit_": 180}  # line caps below the 400 hard cap; other numpy-only files: 260
# The blocks every file carries (or every torch / gymnasium file): a family cap counts the file's own lines.
EVERY_FILE_BLOCKS = (
    "common_args",
    "torch_args",
    "run_helpers",
    "torch_helpers",
    "gym_helpers",
    "entry_point",
)
PLUMBING = ("fail", "check_common_args", "start_run", "finish_run", "check_args")


@pytest.mark.parametrize("stem", STEMS)
def test_reading_order_and_length(stem):
    source = (ROOT / "algos" / f"{stem}.py").read_text()
    tree = ast.parse(source)
    order = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert order[0] == "Args", "Args comes first"
    main_at = order.index("main")
    assert order.index("evaluate") < main_at, "evaluate comes before main"
    for name in PLUMBING:
        assert name in order and order.index(name) > main_at, f"{name} is plumbing: it goes below main"
    before_main = set(order[:main_at])
    assert not before_main & set(PLUMBING), "no plumbing above main"
    blocks = shared_blocks(ROOT / "algos" / f"{stem}.py")
    plumbing = sum(len(blocks[name].splitlines()) + 1 for name in EVERY_FILE_BLOCKS if name in blocks)
    own = len(source.splitlines()) - plumbing
    if not uses_torch(stem):
        cap = next((c for prefix, c in NUMPY_FAMILIES.items() if stem.startswith(prefix)), 260)
        assert own <= cap, f"{own} lines of its own (plumbing blocks aside); this family keeps to {cap}"


@pytest.mark.parametrize("stem", [s for s in STEMS if not uses_torch(s)])
def test_numpy_files_never_import_torch(stem, tmp_path):
    fields = args_fields(stem)
    assert not {"cuda", "torch_deterministic", "torch_threads"} & fields.keys(), (
        "torch fields in a numpy file"
    )
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['{stem}.py', *{smoke_args(stem)!r}, '--runs-dir', {str(tmp_path)!r}, '--no-progress']\n"
        f"runpy.run_path('algos/{stem}.py', run_name='__main__')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def diff_budgets() -> list[tuple[str, str, int]]:
    """(child, parent, budget) rows of the table under '## Diff budgets' in docs/conventions.md."""
    text = (ROOT / "docs" / "conventions.md").read_text()
    section = text.split("## Diff budgets", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`?(\w+)`?\s*\|\s*`?(\w+)`?\s*\|\s*(\d+)\s*\|", section, re.M)
    return [(child, parent, int(budget)) for child, parent, budget in rows]


def changed_lines(parent: str, child: str) -> int:
    a = (ROOT / "algos" / f"{parent}.py").read_text().splitlines()
    b = (ROOT / "algos" / f"{child}.py").read_text().splitlines()
    diff = difflib.unified_diff(a, b, lineterm="", n=0)
    return sum(1 for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))


def test_every_file_with_a_parent_keeps_to_its_diff_budget():
    rows = diff_budgets()
    assert rows, "docs/conventions.md has no diff budget table"
    listed = {child for child, _, _ in rows}
    for stem in STEMS:
        doc = ast.get_docstring(ast.parse((ROOT / "algos" / f"{stem}.py").read_text())) or ""
        parent = re.search(r"Parent:\s*`?(\w+)(?:\.py)?", doc)
        if parent and parent.group(1) != "none":
            assert stem in listed, f"{stem} names parent {parent.group(1)} but has no diff budget"
    over = []
    for child, parent, budget in rows:
        n = changed_lines(parent, child)
        if n > budget:
            over.append(f"{parent} -> {child}: {n} changed lines > budget {budget}")
    assert not over, "\n".join(over)


# ---------------------------------------------------------------- sabotages (issue 11)
def sabotages(stem: str) -> list[dict]:
    path = ROOT / "tests" / "sabotage" / f"{stem}.toml"
    return tomllib.loads(path.read_text()).get("sabotage", []) if path.exists() else []


@pytest.mark.parametrize("stem", STEMS)
def test_sabotages_are_declared_and_still_apply(stem):
    found = sabotages(stem)
    need = 3 if uses_torch(stem) else 1
    assert len(found) >= need, f"tests/sabotage/{stem}.toml: {len(found)} sabotages, at least {need} needed"
    source = (ROOT / "algos" / f"{stem}.py").read_text()
    names = [s["name"] for s in found]
    assert len(names) == len(set(names)), "sabotage names repeat"
    for s in found:
        assert s.get("reason", "").strip(), f"{s['name']}: no reason"
        assert s["old"] in source, f"{s['name']}: its text no longer occurs in algos/{stem}.py"
        assert s["old"] != s["new"], f"{s['name']}: changes nothing"
        ast.parse(source.replace(s["old"], s["new"]))  # a sabotage is a change of meaning, not a syntax error
        assert s.get("tests"), f"{s['name']}: no tests listed"
        for test in s["tests"]:
            file, _, name = test.partition("::")
            assert (ROOT / file).exists(), f"{s['name']}: {file} does not exist"
            function = name.split("[")[0]
            assert not function or f"def {function}(" in (ROOT / file).read_text(), f"{s['name']}: no {test}"
