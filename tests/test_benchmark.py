"""benchmark/run.py --quick runs end to end: subprocess runs, TensorBoard parsing, report, figures."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, STEMS

sys.path.insert(0, str(ROOT / "benchmark"))
from run import steps_and_seconds_to  # noqa: E402


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
        assert f"## {stem}" in report
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
