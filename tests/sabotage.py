"""Sabotage harness: break each algorithm on purpose and check that a fast test notices.

Every algos/<stem>.py has tests/sabotage/<stem>.toml, a list of named sabotages of its defining parts:

    [[sabotage]]
    name = "target_is_online"
    reason = "the TD target must come from the lagging target network"
    old = "next_q = target_network(next_obs)"       # exact text of algos/<stem>.py
    new = "next_q = q_network(next_obs)"
    tests = ["tests/test_value_based.py::test_td_target_uses_the_target_network"]

For each sabotage the runner copies the repository to a temporary folder, replaces `old` by `new` in the file and in
every sibling whose SHARED block of the same name holds `old` (so that the shared-block identity test cannot be what
catches it), and runs the listed fast tests (`-m "not learning"`) in a child forked from the runner, which has
imported torch and the other heavy modules once. The sabotage is caught when one of them fails.
A sabotage whose `old` text no longer occurs is itself a failure, so refactors cannot silently disarm the harness.

    python tests/sabotage.py                 # every file
    python tests/sabotage.py dqn_cartpole -j 2
Exit status 0 when every sabotage is caught.
"""

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SABOTAGE_DIR = ROOT / "tests" / "sabotage"
COPY = ["algos", "tests", "docs", "benchmark", "pyproject.toml", "mkdocs.yml", "requirements.txt"]
IGNORE = shutil.ignore_patterns("runs", "out", "__pycache__", "*.pyc", "site", "wandb")
# Imported once by the runner, before it forks a child per sabotage.
PRELOAD = [
    "numpy",
    "torch",
    "gymnasium",
    "tyro",
    "tqdm",
    "tensorboard.compat.proto.event_pb2",
    "pytest",
    "xdist",
]
MARKER = re.compile(r"\s*# == (SHARED|ALGO|ENV): (\S+) ==")


def load_sabotages(stem: str) -> list[dict]:
    path = SABOTAGE_DIR / f"{stem}.toml"
    if not path.exists():
        return []
    return tomllib.loads(path.read_text())["sabotage"]


def blocks(text: str) -> list[tuple[str | None, int, int]]:
    """(SHARED name or None, start, end) character spans of the marker blocks of a file."""
    spans, name, start, pos = [], None, 0, 0
    for line in text.splitlines(keepends=True):
        marker = MARKER.match(line)
        if marker:
            spans.append((name, start, pos))
            name, start = (marker.group(2) if marker.group(1) == "SHARED" else None), pos
        pos += len(line)
    spans.append((name, start, pos))
    return spans


def shared_block_of(text: str, old: str) -> str | None:
    """The SHARED block that holds the first occurrence of `old`, if any."""
    at = text.index(old)
    return next((name for name, a, b in blocks(text) if a <= at < b and at + len(old) <= b), None)


def apply(root: Path, stem: str, sabotage: dict) -> list[str]:
    """Apply one sabotage under `root`; returns the files changed. Raises ValueError when `old` is gone."""
    path = root / "algos" / f"{stem}.py"
    text = path.read_text()
    old, new = sabotage["old"], sabotage["new"]
    if old not in text:
        raise ValueError(f"{stem}: sabotage {sabotage['name']!r}: its text no longer occurs")
    if old == new:
        raise ValueError(f"{stem}: sabotage {sabotage['name']!r} changes nothing")
    shared = shared_block_of(text, old)
    changed = [path.name]
    path.write_text(text.replace(old, new))
    if shared is None:
        return changed
    for sibling in sorted((root / "algos").glob("*.py")):
        if sibling == path:
            continue
        sib = sibling.read_text()
        pieces, last = [], 0
        for name, a, b in blocks(sib):
            if name == shared and old in sib[a:b]:
                pieces += [sib[last:a], sib[a:b].replace(old, new)]
                last = b
        if last:
            sibling.write_text("".join(pieces) + sib[last:])
            changed.append(sibling.name)
    return changed


def prepare(stem: str, sabotage: dict) -> tuple[Path, list[str]]:
    """A temporary copy of the repository with the sabotage applied; returns (root, files changed)."""
    root = Path(tempfile.mkdtemp(prefix=f"sabotage_{stem}_"))
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, root / name)
    try:
        return root, apply(root, stem, sabotage)
    except ValueError:
        shutil.rmtree(root, ignore_errors=True)
        raise


def fork_pytest(root: Path, tests: list[str]) -> int:
    """Run the listed tests in a child process forked from this one, which has already imported torch, numpy and
    gymnasium (importing them is most of a short pytest run). The child works in `root`; its output goes to
    root/pytest.out. Returns the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setpgrp()  # one group, so that a timeout also stops the runs the tests start
        out = os.open(root / "pytest.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.chdir(root)
        sys.path[0] = str(root)  # as `python -m pytest` run in root would have it
        import pytest

        code = int(
            pytest.main(["-x", "-q", "-m", "not learning", "-p", "no:cacheprovider", "-n", "0", *tests])
        )
    except BaseException:  # noqa: BLE001 - report whatever happened, then leave without running the parent's code
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def verdict(code: int, output: str, changed: list[str]) -> tuple[str, str]:
    """(status, detail) from pytest's exit status: caught, MISSED or ERROR."""
    lines = [line for line in output.splitlines() if line.strip()]
    tail = lines[-1] if lines else ""
    if code == 1:
        failed = [line.split(" ")[1] for line in lines if line.startswith("FAILED ")]
        return "caught", f"by {', '.join(failed) or tail} ({len(changed)} file(s) changed)"
    if code == 0:
        return "MISSED", f"the listed tests pass: {tail}"
    return "ERROR", f"pytest exit {code}: {tail}"


def run_all(work: list[tuple[str, dict]], jobs: int, timeout: float = 900.0):
    """Yield (stem, sabotage, status, detail, seconds) for each sabotage, in order, `jobs` of them at a time.
    One thread forks and waits for every child: no threads, so forking is safe."""
    for module in PRELOAD:
        try:
            __import__(module)
        except ImportError:
            pass
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", MPLBACKEND="Agg")  # every child inherits it
    pending, running, done = list(enumerate(work)), {}, {}
    next_index = 0
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, (stem, sabotage) = pending.pop(0)
                start = time.time()
                if not sabotage.get("tests"):
                    done[index] = ("ERROR", "no tests listed", 0.0)
                    continue
                try:
                    root, changed = prepare(stem, sabotage)
                except ValueError as error:
                    done[index] = ("ERROR", str(error), 0.0)
                    continue
                running[fork_pytest(root, sabotage["tests"])] = (index, root, changed, start)
            for pid, (index, root, changed, start) in list(running.items()):
                finished, status = os.waitpid(pid, os.WNOHANG)
                if not finished and time.time() - start > timeout:
                    os.killpg(pid, 9)
                    finished, status = os.waitpid(pid, 0)
                if finished:
                    del running[pid]
                    output = (root / "pytest.out").read_text(errors="replace")
                    shutil.rmtree(root, ignore_errors=True)
                    done[index] = (
                        *verdict(os.waitstatus_to_exitcode(status), output, changed),
                        time.time() - start,
                    )
            while next_index in done:
                stem, sabotage = work[next_index]
                yield (stem, sabotage, *done.pop(next_index))
                next_index += 1
            time.sleep(0.05)
    finally:  # interrupted: the children run in process groups of their own, so stop them here
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for pid, (_, root, _, _) in running.items():
            os.killpg(pid, 9)
            os.waitpid(pid, 0)
            shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stems", nargs="*", help="algorithm files (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="sabotages run side by side")
    opts = parser.parse_args()
    stems = opts.stems or sorted(p.stem for p in (ROOT / "algos").glob("*.py"))
    work = [(stem, s) for stem in stems for s in load_sabotages(stem)]
    missing = [stem for stem in stems if not load_sabotages(stem)]
    for stem in missing:
        print(f"ERROR   {stem}: no sabotages in tests/sabotage/{stem}.toml", flush=True)
    failures = len(missing)
    for stem, sabotage, status, detail, seconds in run_all(work, max(1, opts.jobs)):
        failures += status != "caught"
        print(f"{status:7s} {stem}: {sabotage['name']} ({seconds:.0f} s) {detail}", flush=True)
    print(
        f"{len(work) - failures + len(missing)} caught, {failures} not caught or broken, of {len(work)} sabotages"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
