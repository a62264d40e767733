"""Helpers every test file uses: load an algorithm file as a module and run it in-process."""

import importlib.util
import math
import shlex
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ALGOS = sorted((ROOT / "algos").glob("*.py"))
STEMS = [path.stem for path in ALGOS]
TIME_KEYS = {"train_seconds", "steps_per_second", "run_dir", "planning_ms_per_action"}  # wall-clock figures
SUMMARY_KEYS = {
    "algo", "env_id", "seed", "total_steps", "num_updates", "train_seconds", "steps_per_second",
    "eval_episodes", "eval_return_mean", "eval_return_std", "interrupted", "run_dir",
}  # fmt: skip


def default_signals() -> None:
    """preexec_fn of a run the test will stop: Ctrl-C and SIGTERM as a terminal delivers them, even when the suite
    itself runs as a background job (`cmd &` in a script starts it with SIGINT ignored, which the child inherits and
    the files keep, by design)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def load_algo(stem: str):
    """Import algos/<stem>.py as a fresh module (the files are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"algo_{stem}", ROOT / "algos" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def smoke_args(stem: str) -> list[str]:
    """The tiny budget of tests/smoke/<stem>.args: enough for at least one update."""
    path = ROOT / "tests" / "smoke" / f"{stem}.args"
    assert path.exists(), f"{path} is missing: every algos/*.py needs a smoke budget"
    return shlex.split(path.read_text())


def run_algo(stem: str, argv: list[str], runs_dir) -> dict:
    """Parse argv with the file's own tyro parser and call its main(); returns the summary."""
    import tyro

    module = load_algo(stem)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = tyro.cli(module.Args, args=[*argv, "--runs-dir", str(runs_dir), "--no-progress"])
        return module.main(args)
    finally:  # main() takes over SIGINT and SIGTERM; give them back to pytest
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def two_of_three(stem: str, argv: list[str], runs_dir, reached) -> list[dict]:
    """Seeds 1, 2, 3 in order until two summaries satisfy `reached` (or two can no longer); the summaries.

    For learning tests of files whose single seed falls short on some CPUs: another machine's vector
    kernels round differently, the run diverges, and a seed that reaches the threshold here may not
    there (PPO CartPole seed 2 evaluated at 140.7 in CI). Two of three fails only if two seeds do."""
    summaries: list[dict] = []
    for seed in (1, 2, 3):
        summaries.append(run_algo(stem, [*argv, "--seed", str(seed)], runs_dir / f"seed{seed}"))
        hits = sum(map(reached, summaries))
        if hits >= 2 or hits + 3 - len(summaries) < 2:
            break
    return summaries


def assert_summary(summary: dict) -> None:
    missing = SUMMARY_KEYS - summary.keys()
    assert not missing, f"summary lacks {missing}"
    for key, value in summary.items():
        if isinstance(value, float):
            assert math.isfinite(value), f"{key} = {value}"


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


def assert_bad_files_rejected(stem: str, flag: str, bad: dict, tmp_path) -> None:
    """Each bad file (None: missing, bytes: not an npz, dict: npz arrays) stops the run with one
    `error:` line naming the flag, before anything is written."""
    for name, content in bad.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            np.savez(path, **content)  # object arrays are pickled: the loader must refuse them
        runs_dir = tmp_path / f"runs_{name}"
        with pytest.raises(SystemExit) as exit_info:
            run_algo(stem, [*smoke_args(stem), flag, str(path)], runs_dir)
        message = exit_info.value.code
        assert isinstance(message, str) and message.startswith("error:") and "\n" not in message, name
        assert flag.lstrip("-") in message, (name, message)
        assert not runs_dir.exists() or not any(runs_dir.iterdir()), f"{name} left a run directory"


def pytest_collection_modifyitems(items):
    """The tests marked `longest` first. With `--dist loadgroup`, xdist queues each `xdist_group` of several tests
    first, then the single tests in collection order (every learning test is single), so the learning suite's
    longest test starts at once on one worker while the other works through the rest, instead of starting late
    and keeping one worker alone at the end. The order of the other tests is kept (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)
