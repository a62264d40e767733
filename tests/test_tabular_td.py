"""Tabular TD family (cliff_sarsa, cliff_q_learning, dyna_q): the TD target, the treatment of
termination vs TimeLimit truncation inside the loop, Dyna-Q with no planning == Q-learning, and
the documented learning results on CliffWalking-v1."""

import os

import numpy as np
import pytest
from conftest import TIME_KEYS, load_algo, run_algo

STEMS = ["cliff_sarsa", "cliff_q_learning", "dyna_q"]
UP, RIGHT, DOWN = 0, 1, 2
START, GOAL = 36, 47  # CliffWalking-v1: row 3 col 0 and row 3 col 11 of the 4 x 12 grid


@pytest.mark.parametrize("stem", STEMS)
def test_td_target_terminated_and_truncated(stem):
    td_target = load_algo(stem).td_target
    assert td_target(-1.0, 5.0, True, 0.9) == -1.0  # terminated: no bootstrap
    assert td_target(-1.0, 5.0, False, 0.9) == pytest.approx(-1.0 + 0.9 * 5.0)  # truncated: bootstraps
    assert td_target(-100.0, 2.0, False, 1.0) == -98.0  # a fall: not terminal


def test_bootstrap_values():
    q = np.arange(8, dtype=float).reshape(2, 4)  # [S=2, A=4]
    assert load_algo("cliff_sarsa").bootstrap_value(q, 1, 0) == 4.0  # Q[s', a'] of the action taken
    assert load_algo("cliff_q_learning").bootstrap_value(q, 1, 0) == 7.0  # max_a Q[s', a]
    assert load_algo("dyna_q").bootstrap_value(q, 1, 0) == 7.0


def test_q_planning_replays_the_model():
    dyna = load_algo("dyna_q")
    q = np.zeros((48, 4))
    model, known = np.zeros((48, 4, 3)), np.zeros((48, 4), dtype=bool)
    model[35, DOWN], known[35, DOWN] = (-1.0, GOAL, True), True  # the step into the goal
    model[34, RIGHT], known[34, RIGHT] = (-1.0, 35, False), True
    q[GOAL] = 100.0  # never learned in a run; here it shows that termination cuts the bootstrap
    dyna.q_planning(q, model, known, 200, 1.0, 1.0, np.random.default_rng(0))
    assert q[35, DOWN] == -1.0 and q[34, RIGHT] == -1.0 + q[35].max()
    unseen = ~known
    unseen[GOAL] = False
    assert (q[unseen] == 0).all()  # pairs never seen are never planned on
    before = q.copy()
    dyna.q_planning(q, model, known, 0, 1.0, 1.0, np.random.default_rng(0))
    assert (q == before).all()


def crafted_run(stem, runs_dir, q, argv):
    """Start from a hand-made Q (greedy path fixed by it), train with alpha = 1, epsilon = 0, and
    return the saved table: each visited Q(s, a) then equals its TD target exactly."""
    path = runs_dir / "crafted.npz"
    os.makedirs(runs_dir, exist_ok=True)
    np.savez(path, q=q)
    argv = [
        *argv,
        "--load-model",
        str(path),
        "--alpha",
        "1",
        "--epsilon",
        "0",
        "--gamma",
        "1",
        "--save-model",
    ]
    summary = run_algo(stem, argv, runs_dir / "runs")
    with np.load(os.path.join(summary["run_dir"], "model.npz")) as data:
        return data["q"]


@pytest.mark.parametrize("stem", STEMS)
def test_truncation_bootstraps_in_the_loop(stem, tmp_path):
    q = np.full((48, 4), -10.0)
    q[START, UP] = 0.0  # greedy first step: up into state 24
    q[24] = 5.0
    learned = crafted_run(stem, tmp_path, q, ["--total-steps", "1", "--max-episode-steps", "1"])
    assert learned[START, UP] == -1.0 + 5.0  # the TimeLimit cut the episode, the target still bootstraps


@pytest.mark.parametrize("stem", STEMS)
def test_termination_cuts_the_bootstrap_in_the_loop(stem, tmp_path):
    q = np.full((48, 4), -10.0)
    q[START, UP] = 0.0
    q[24:35, RIGHT] = 0.0  # along row 2 to its end
    q[35, DOWN] = 0.0  # into the goal
    q[GOAL] = 100.0  # would leak into Q(35, down) if termination did not zero the bootstrap
    learned = crafted_run(stem, tmp_path, q, ["--total-steps", "13", "--max-episode-steps", "100"])
    assert learned[35, DOWN] == -1.0  # reaching the goal terminates: the target is the reward alone


def test_planning_steps_zero_is_q_learning(tmp_path):
    argv = ["--total-steps", "6000", "--seed", "3", "--save-model"]
    plain = run_algo("cliff_q_learning", argv, tmp_path / "q")
    dyna = run_algo("dyna_q", [*argv, "--planning-steps", "0"], tmp_path / "d")
    strip = lambda s: {k: v for k, v in s.items() if k not in TIME_KEYS | {"algo"}}  # noqa: E731
    assert strip(plain) == strip(dyna)
    tables = [np.load(os.path.join(s["run_dir"], "model.npz"))["q"] for s in (plain, dyna)]
    assert np.array_equal(*tables)


# ---------------------------------------------------------------- learning (documented results)
@pytest.mark.learning
def test_q_learning_walks_the_cliff_edge(tmp_path):
    summary = run_algo("cliff_q_learning", [], tmp_path)
    assert summary["eval_return_mean"] == -13.0 and summary["path_length"] == 13


@pytest.mark.learning
def test_sarsa_takes_a_safer_path(tmp_path):
    summary = run_algo("cliff_sarsa", [], tmp_path)
    assert -17.0 <= summary["eval_return_mean"] < -13.0
    assert summary["path_length"] == -summary["eval_return_mean"]  # reaches the goal without a fall


@pytest.mark.learning
def test_dyna_q_finds_the_optimal_path_in_fewer_real_steps(tmp_path):
    plain = run_algo("cliff_q_learning", [], tmp_path)
    dyna = run_algo("dyna_q", [], tmp_path)
    assert dyna["eval_return_mean"] == -13.0 and dyna["path_length"] == 13
    assert dyna["steps_to_target"] is not None and plain["steps_to_target"] is not None
    assert dyna["steps_to_target"] < plain["steps_to_target"] / 2
