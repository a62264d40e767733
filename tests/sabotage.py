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
catches it), and runs the listed fast tests (`-m "not learning"`). The sabotage is caught when one of them fails.
A sabotage whose `old` text no longer occurs is itself a failure, so refactors cannot silently disarm the harness.

    python tests/sabotage.py                 # every file
    python tests/sabotage.py dqn_cartpole -j 2
Exit status 0 when every sabotage is caught.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SABOTAGE_DIR = ROOT / "tests" / "sabotage"
COPY = ["algos", "tests", "docs", "benchmark", "pyproject.toml", "mkdocs.yml", "requirements.txt"]
IGNORE = shutil.ignore_patterns("runs", "out", "__pycache__", "*.pyc", "site", "wandb")
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


def run_one(stem: str, sabotage: dict) -> tuple[str, str, float]:
    """Returns (status, detail, seconds); status is caught, MISSED or ERROR."""
    start = time.time()
    tests = sabotage.get("tests") or []
    if not tests:
        return "ERROR", "no tests listed", 0.0
    with tempfile.TemporaryDirectory(prefix=f"sabotage_{stem}_") as tmp:
        root = Path(tmp)
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=IGNORE)
            elif src.exists():
                shutil.copy2(src, root / name)
        try:
            changed = apply(root, stem, sabotage)
        except ValueError as error:
            return "ERROR", str(error), 0.0
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "MPLBACKEND": "Agg"}
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not learning", "-p", "no:cacheprovider", "-n", "0", *tests]
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=900)
    seconds = time.time() - start
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    tail = lines[-1] if lines else out.stderr.strip()[-200:]
    if out.returncode == 1:
        failed = [line.split(" ")[1] for line in lines if line.startswith("FAILED ")]
        return "caught", f"by {', '.join(failed) or tail} ({len(changed)} file(s) changed)", seconds
    if out.returncode == 0:
        return "MISSED", f"the listed tests pass: {tail}", seconds
    return "ERROR", f"pytest exit {out.returncode}: {tail}", seconds


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
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        futures = [(stem, s, pool.submit(run_one, stem, s)) for stem, s in work]
        for stem, sabotage, future in futures:
            status, detail, seconds = future.result()
            failures += status != "caught"
            print(f"{status:7s} {stem}: {sabotage['name']} ({seconds:.0f} s) {detail}", flush=True)
    print(f"{len(work) - failures + len(missing)} caught, {failures} not caught or broken, of {len(work)} sabotages")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
