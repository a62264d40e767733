"""Tabular TD family (cliff_sarsa, cliff_q_learning, dyna_q, cliff_n_step_sarsa, cliff_expected_sarsa):
the TD target, the treatment of termination vs TimeLimit truncation inside the loop, Dyna-Q with no
planning == Q-learning, n-step SARSA with n = 1 == SARSA, expected SARSA's expectation, and the
documented learning results on CliffWalking-v1."""

import os
import signal

import numpy as np
import pytest
import tyro
from conftest import TIME_KEYS, assert_bad_files_rejected, load_algo, run_algo

STEMS = ["cliff_sarsa", "cliff_q_learning", "dyna_q", "cliff_n_step_sarsa", "cliff_expected_sarsa"]
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
    model = np.full((48, 4, 3), np.nan)  # NaN: a pair never seen
    model[35, DOWN] = (-1.0, GOAL, True)  # the step into the goal
    model[34, RIGHT] = (-1.0, 35, False)
    q[GOAL] = 100.0  # never learned in a run; here it shows that termination cuts the bootstrap
    dyna.q_planning(q, model, 200, 1.0, 1.0, np.random.default_rng(0))
    assert q[35, DOWN] == -1.0 and q[34, RIGHT] == -1.0 + q[35].max()
    unseen = np.isnan(model[:, :, 0])
    unseen[GOAL] = False
    assert (q[unseen] == 0).all()  # pairs never seen are never planned on
    before = q.copy()
    dyna.q_planning(q, model, 0, 1.0, 1.0, np.random.default_rng(0))
    assert (q == before).all()


def test_dyna_q_plan_remembers_the_step_then_plans():
    dyna = load_algo("dyna_q")
    args = dyna.Args(planning_steps=7, alpha=1.0)
    q, model = np.zeros((48, 4)), np.full((48, 4, 3), np.nan)
    q[24] = 5.0
    assert dyna.plan(q, model, (START, UP, -1.0, 24, False), args, np.random.default_rng(0)) == 7
    assert (
        model[START, UP].tolist() == [-1.0, 24.0, 0.0]
        and np.isnan(np.delete(model.reshape(-1, 3), 144, 0)).all()
    )
    assert (
        q[START, UP] == -1.0 + 5.0
    )  # the one remembered pair, replayed: a truncation is not stored as terminal
    for stem in ("cliff_sarsa", "cliff_q_learning"):  # no model, no planning
        fresh = np.full((48, 4, 3), np.nan)
        assert load_algo(stem).plan(q, fresh, (START, UP, -1.0, 24, False), args, None) == 0
        assert np.isnan(fresh).all()


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


# Dyna-Q twice: with planning (what its model stores at a truncation) and without (what the real update
# does: with planning on, the replay of the same pair would hide a wrong real update)
VARIANTS = [
    ("cliff_sarsa", []),
    ("cliff_q_learning", []),
    ("dyna_q", []),
    ("dyna_q", ["--planning-steps", "0"]),
    ("cliff_n_step_sarsa", ["--n", "1"]),
    ("cliff_expected_sarsa", []),
]
VARIANT_IDS = [
    "cliff_sarsa", "cliff_q_learning", "dyna_q", "dyna_q-planning0", "cliff_n_step_sarsa-n1", "cliff_expected_sarsa",
]  # fmt: skip


@pytest.mark.parametrize("stem, extra", VARIANTS, ids=VARIANT_IDS)
def test_truncation_bootstraps_in_the_loop(stem, extra, tmp_path):
    q = np.full((48, 4), -10.0)
    q[START, UP] = 0.0  # greedy first step: up into state 24
    q[24] = 5.0
    learned = crafted_run(stem, tmp_path, q, ["--total-steps", "1", "--max-episode-steps", "1", *extra])
    assert learned[START, UP] == -1.0 + 5.0  # the TimeLimit cut the episode, the target still bootstraps


@pytest.mark.parametrize("stem, extra", VARIANTS, ids=VARIANT_IDS)
def test_termination_cuts_the_bootstrap_in_the_loop(stem, extra, tmp_path):
    q = np.full((48, 4), -10.0)
    q[START, UP] = 0.0
    q[24:35, RIGHT] = 0.0  # along row 2 to its end
    q[35, DOWN] = 0.0  # into the goal
    q[GOAL] = 100.0  # would leak into Q(35, down) if termination did not zero the bootstrap
    learned = crafted_run(stem, tmp_path, q, ["--total-steps", "13", "--max-episode-steps", "100", *extra])
    assert learned[35, DOWN] == -1.0  # reaching the goal terminates: the target is the reward alone


def test_sarsa_bootstraps_on_the_action_it_takes_next(tmp_path, monkeypatch):
    """On-policy: the a' of each target is the action the behaviour policy then takes (epsilon = 1: all random)."""
    sarsa = load_algo("cliff_sarsa")
    taken, bootstrapped, envs = [], [], []
    real_bootstrap, real_make_env = sarsa.bootstrap_value, sarsa.make_env

    def make_env(args, render_mode=None):
        env = real_make_env(args, render_mode)
        if not envs:  # the training env only
            step = env.step
            env.step = lambda action: taken.append(action) or step(action)
        envs.append(env)
        return env

    monkeypatch.setattr(sarsa, "make_env", make_env)
    monkeypatch.setattr(
        sarsa, "bootstrap_value", lambda q, s, a: bootstrapped.append(a) or real_bootstrap(q, s, a)
    )
    args = [
        "--total-steps",
        "60",
        "--max-episode-steps",
        "1000",
        "--epsilon",
        "1",
        "--runs-dir",
        str(tmp_path),
    ]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sarsa.main(tyro.cli(sarsa.Args, args=[*args, "--no-progress"]))
    finally:  # main() takes over SIGINT and SIGTERM; give them back to pytest
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert len(taken) == 60 and len(set(taken)) == 4  # random actions, no episode end
    assert bootstrapped[:-1] == taken[1:]


def test_planning_steps_zero_is_q_learning(tmp_path):
    argv = ["--total-steps", "6000", "--seed", "3", "--save-model"]
    plain = run_algo("cliff_q_learning", argv, tmp_path / "q")
    dyna = run_algo("dyna_q", [*argv, "--planning-steps", "0"], tmp_path / "d")
    strip = lambda s: {k: v for k, v in s.items() if k not in TIME_KEYS | {"algo"}}  # noqa: E731
    assert strip(plain) == strip(dyna)
    tables = [np.load(os.path.join(s["run_dir"], "model.npz"))["q"] for s in (plain, dyna)]
    assert np.array_equal(*tables)


@pytest.mark.parametrize("stem", STEMS)
def test_bad_model_files_are_one_line(stem, tmp_path):
    shape = (48, 4)
    bad = {
        "missing.npz": None,
        "garbage.npz": b"not an npz file" * 10,
        "other_key.npz": {"table": np.zeros(shape)},
        "wrong_shape.npz": {"q": np.zeros((16, 4))},
        "strings.npz": {"q": np.full(shape, "1.0")},
        "booleans.npz": {"q": np.zeros(shape, dtype=bool)},
        "nan.npz": {"q": np.full(shape, np.nan)},
        "inf.npz": {"q": np.full(shape, -np.inf)},
        "objects.npz": {"q": np.full(shape, None, dtype=object)},
    }
    assert_bad_files_rejected(stem, "--load-model", bad, tmp_path)


def test_target_return_nan_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="target-return"):
        run_algo("cliff_sarsa", ["--target-return", "nan"], tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# ---------------------------------------------------------------- n-step SARSA and expected SARSA
def test_n_step_return_folds_the_td_target():
    n_step_return = load_algo("cliff_n_step_sarsa").n_step_return
    td_target = load_algo("cliff_n_step_sarsa").td_target
    assert n_step_return([-1.0, -2.0, -3.0], 10.0, False, 0.5) == -1.0 - 0.5 * 2 - 0.25 * 3 + 0.125 * 10
    assert n_step_return([-1.0, -2.0, -3.0], 10.0, True, 0.5) == -1.0 - 0.5 * 2 - 0.25 * 3  # no bootstrap
    for termination in (False, True):  # one reward: SARSA's target, bit for bit
        assert n_step_return([-100.0], 3.0, termination, 0.9) == td_target(-100.0, 3.0, termination, 0.9)


def test_n_step_sarsa_with_n_1_is_sarsa(tmp_path):
    """Same seed: the same summary and the same table, truncations (40-step TimeLimit) and falls included."""
    argv = ["--total-steps", "4000", "--max-episode-steps", "40", "--seed", "3", "--save-model"]
    sarsa = run_algo("cliff_sarsa", argv, tmp_path / "s")
    n_step = run_algo("cliff_n_step_sarsa", [*argv, "--n", "1"], tmp_path / "n")
    strip = lambda s: {k: v for k, v in s.items() if k not in TIME_KEYS | {"algo"}}  # noqa: E731
    assert strip(sarsa) == strip(n_step)
    tables = [np.load(os.path.join(s["run_dir"], "model.npz"))["q"] for s in (sarsa, n_step)]
    assert np.array_equal(*tables)


def walk_to_the_goal_q():
    """Greedy path of 13 steps: up, right along row 2, down into the goal; Q = 0 on it, -10 elsewhere."""
    q = np.full((48, 4), -10.0)
    q[START, UP] = 0.0
    q[24:35, RIGHT] = 0.0
    q[35, DOWN] = 0.0
    q[GOAL] = 100.0  # would leak into the last pairs if the termination did not cut the bootstrap
    return q


def test_n_step_targets_in_the_loop_up_to_the_termination(tmp_path):
    """n = 3, alpha = 1: each pair takes the 3 rewards after it plus Q(s_t+3, a_t+3) (still 0 on the path);
    at the goal the last two pairs take the 2 and 1 rewards left and nothing beyond."""
    argv = ["--n", "3", "--total-steps", "13", "--max-episode-steps", "100"]
    learned = crafted_run("cliff_n_step_sarsa", tmp_path, walk_to_the_goal_q(), argv)
    assert learned[START, UP] == -3.0  # a 1-step target would give -1
    assert (learned[24:34, RIGHT] == -3.0).all()
    assert learned[34, RIGHT] == -2.0 and learned[35, DOWN] == -1.0


def test_n_step_targets_at_a_truncation_bootstrap_from_the_cut_state(tmp_path):
    """n = 3 but a 2-step TimeLimit: both pairs bootstrap from Q(s_2, a_2) = 5, the state where it was cut."""
    q = np.full((48, 4), -10.0)
    q[START, UP] = 0.0
    q[24, RIGHT] = 0.0
    q[25] = 5.0
    argv = ["--n", "3", "--total-steps", "2", "--max-episode-steps", "2"]
    learned = crafted_run("cliff_n_step_sarsa", tmp_path, q, argv)
    assert learned[START, UP] == -2.0 + 5.0 and learned[24, RIGHT] == -1.0 + 5.0


def test_n_zero_is_one_line(tmp_path):
    for n in ("0", "-1"):
        with pytest.raises(SystemExit, match="--n must be >= 1"):
            run_algo("cliff_n_step_sarsa", ["--n", n], tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_expected_sarsa_bootstraps_on_the_epsilon_greedy_expectation():
    bootstrap_value = load_algo("cliff_expected_sarsa").bootstrap_value
    q = np.arange(8, dtype=float).reshape(2, 4)  # [S=2, A=4]; at s' = 1 the greedy action is 3
    for next_action in range(4):  # the sampled a' plays no part
        assert bootstrap_value(q, 1, next_action, 0.2) == pytest.approx(0.05 * (4 + 5 + 6) + 0.85 * 7)
    assert bootstrap_value(q, 1, 0, 0.0) == 7.0  # epsilon = 0: the greedy value, Q-learning's max
    assert bootstrap_value(q, 1, 0, 1.0) == pytest.approx(5.5)  # epsilon = 1: the uniform mean
    q[1] = [3.0, 3.0, 1.0, 0.0]  # a tie: either greedy action gives the same expectation
    assert bootstrap_value(q, 1, 2, 0.2) == pytest.approx(0.85 * 3 + 0.05 * (3 + 1 + 0))


def test_expected_sarsa_loop_uses_its_epsilon(tmp_path):
    """alpha = 1, epsilon = 0.5, one step: Q(s, a) of the step taken becomes r + the expectation of Q(s', .)
    under the epsilon-greedy policy with that epsilon (not the max, not the mean, not Q(s', a'))."""
    env = load_algo("cliff_expected_sarsa").make_env(load_algo("cliff_expected_sarsa").Args())
    table = env.unwrapped.P
    q = np.random.default_rng(0).normal(size=(48, 4)).round(3)
    path = tmp_path / "q.npz"
    np.savez(path, q=q)
    argv = ["--load-model", str(path), "--alpha", "1", "--epsilon", "0.5", "--total-steps", "1"]
    summary = run_algo("cliff_expected_sarsa", [*argv, "--max-episode-steps", "1", "--save-model"], tmp_path)
    learned = np.load(os.path.join(summary["run_dir"], "model.npz"))["q"]
    (action,) = np.flatnonzero(learned[START] != q[START])
    _, next_obs, reward, _ = table[START][action][0]
    row = q[next_obs]
    assert learned[START, action] == pytest.approx(reward + 0.5 * row.max() + 0.5 * row.mean())


# ---------------------------------------------------------------- learning (documented results)
@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_q_learning_walks_the_cliff_edge(seed, tmp_path):
    summary = run_algo("cliff_q_learning", ["--seed", str(seed)], tmp_path)
    assert summary["eval_return_mean"] == -13.0 and summary["path_length"] == 13


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sarsa_takes_a_safer_path(seed, tmp_path):
    summary = run_algo("cliff_sarsa", ["--seed", str(seed)], tmp_path)
    assert -17.0 <= summary["eval_return_mean"] < -13.0
    assert summary["path_length"] == -summary["eval_return_mean"]  # reaches the goal without a fall


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dyna_q_finds_the_optimal_path_in_fewer_real_steps(seed, tmp_path):
    plain = run_algo("cliff_q_learning", ["--seed", str(seed)], tmp_path)
    dyna = run_algo("dyna_q", ["--seed", str(seed)], tmp_path)
    assert dyna["eval_return_mean"] == -13.0 and dyna["path_length"] == 13
    assert dyna["steps_to_target"] is not None and plain["steps_to_target"] is not None
    assert dyna["steps_to_target"] < plain["steps_to_target"] / 2


def online_return(summary: dict) -> float:
    """Mean return of the training episodes (behaviour policy) that end in the second half of the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(summary["run_dir"], size_guidance={"scalars": 0})
    events.Reload()
    late = [e.value for e in events.Scalars("charts/episodic_return") if e.step > summary["total_steps"] // 2]
    return float(np.mean(late))


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_n_step_sarsa_takes_a_safe_path(seed, tmp_path):
    summary = run_algo("cliff_n_step_sarsa", ["--seed", str(seed)], tmp_path)
    assert -17.0 <= summary["eval_return_mean"] <= -13.0
    assert summary["path_length"] == -summary["eval_return_mean"]  # reaches the goal without a fall


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2])
def test_n_step_sarsa_reaches_a_safe_path_in_fewer_steps_than_sarsa(seed, tmp_path):
    argv = ["--seed", str(seed), "--target-return", "-17"]
    sarsa = run_algo("cliff_sarsa", argv, tmp_path)
    n_step = run_algo("cliff_n_step_sarsa", [*argv, "--n", "3"], tmp_path)
    assert n_step["steps_to_target"] is not None and sarsa["steps_to_target"] is not None
    assert n_step["steps_to_target"] < sarsa["steps_to_target"]


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2])
def test_expected_sarsa_is_safe_and_earns_more_online_than_q_learning(seed, tmp_path):
    """Sutton & Barto, figure 6.4: the on-policy target keeps the behaviour off the edge while it explores."""
    expected = run_algo("cliff_expected_sarsa", ["--seed", str(seed)], tmp_path)
    q_learning = run_algo("cliff_q_learning", ["--seed", str(seed)], tmp_path)
    assert -17.0 <= expected["eval_return_mean"] <= -13.0
    assert expected["path_length"] == -expected["eval_return_mean"]
    assert online_return(expected) > online_return(q_learning) + 10.0  # measured: about -22 against -50
