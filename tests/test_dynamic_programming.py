"""Dynamic programming: exact values and policies where the answer is known (CONVENTIONS 7).

Unit tests call the files' pure functions; the rest run `main` and read the summary and
`model.npz`. The learning tests evaluate 1000 episodes in the real environment.
"""

import os
from collections import deque

import numpy as np
import pytest
import tyro
from conftest import assert_bad_files_rejected, load_algo, run_algo

CLIFF = ["cliff_policy_iteration", "cliff_value_iteration"]
LAKE = ["frozenlake_policy_iteration", "frozenlake_value_iteration"]
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3  # CliffWalking actions
CLIFF_START, CLIFF_GOAL = 36, 47


def tables(stem: str, argv: tuple = ()):
    module = load_algo(stem)
    args = tyro.cli(module.Args, args=list(argv))
    env = module.make_env(args)
    return module, args, env, *module.transition_tables(env)


def solve(stem: str, argv: tuple = ()) -> tuple[np.ndarray, np.ndarray, int]:
    """The planning loop of `main` without the run: V, greedy policy, iterations."""
    module, args, env, P, R, terminal = tables(stem, argv)
    V, policy = np.zeros(len(terminal)), np.zeros(len(terminal), dtype=np.int64)
    for iteration in range(1, args.max_iterations + 1):
        V, policy, _, converged = module.dp_iteration(P, R, terminal, V, policy, args)
        if converged:
            return V, policy, iteration
    raise AssertionError(f"{stem} {argv} did not converge")


def success_within(P, terminal, goal, policy, start, horizon) -> float:
    """Exact probability that the policy reaches `goal` within `horizon` steps (no sampling)."""
    P_pi = P[np.arange(len(policy)), policy]  # [S, S']
    d, success = np.eye(len(policy))[start], 0.0
    for _ in range(horizon):
        d = d @ P_pi
        success += d[goal].sum()
        d[terminal] = 0.0
    return success


def run_model(stem, argv, runs_dir) -> tuple[dict, np.ndarray, np.ndarray]:
    summary = run_algo(stem, [*argv, "--save-model"], runs_dir)
    with np.load(os.path.join(summary["run_dir"], "model.npz")) as data:
        return summary, data["V"], data["policy"]


# ---------------------------------------------------------------- the model as arrays
def test_cliff_tables():
    _, _, _, P, R, terminal = tables("cliff_value_iteration")
    assert P.shape == (48, 4, 48) and np.allclose(P.sum(axis=2), 1.0)
    assert np.flatnonzero(terminal).tolist() == [CLIFF_GOAL]
    assert (
        P[CLIFF_START, RIGHT, CLIFF_START] == 1.0 and R[CLIFF_START, RIGHT] == -100.0
    )  # fall, back to start
    assert P[35, DOWN, CLIFF_GOAL] == 1.0 and R[35, DOWN] == -1.0


def test_frozenlake_tables():
    _, _, env, P, R, terminal = tables("frozenlake_value_iteration")
    desc = env.unwrapped.desc.ravel()
    assert np.array_equal(terminal, (desc == b"H") | (desc == b"G"))
    assert np.allclose(P.sum(axis=2), 1.0)
    assert P[0, 0, 0] == pytest.approx(2 / 3) and P[0, 0, 4] == pytest.approx(1 / 3)  # left: wall twice, down
    assert R[14, 2] == pytest.approx(1 / 3) and R[0, 0] == 0.0  # right from 14 reaches G one time in three


@pytest.mark.parametrize(
    "stem, argv",
    [("cliff_value_iteration", ("--is-slippery",)), ("frozenlake_value_iteration", ("--map-name", "8x8"))],
)
def test_action_values_match_a_loop_over_env_P(stem, argv):
    module, args, env, P, R, terminal = tables(stem, argv)
    V = np.random.default_rng(0).normal(size=len(terminal))
    expected = np.zeros_like(R)
    for s, actions in env.unwrapped.P.items():
        for a, outcomes in actions.items():
            expected[s, a] = sum(p * (r + 0.9 * (0.0 if done else V[s2])) for p, s2, r, done in outcomes)
    assert np.allclose(module.action_values(P, R, terminal, V, 0.9), expected)


@pytest.mark.parametrize("stem", ["cliff_policy_iteration", "frozenlake_policy_iteration"])
def test_policy_evaluation_solves_the_linear_system(stem):
    module, args, env, P, R, terminal = tables(stem, ("--is-slippery",))
    n = len(terminal)
    policy = np.random.default_rng(0).integers(4, size=n)
    V, sweeps, converged = module.policy_evaluation(P, R, terminal, policy, np.zeros(n), 0.9, 1e-13, 100_000)
    P_pi, R_pi = P[np.arange(n), policy] * ~terminal, R[np.arange(n), policy]  # V = 0 beyond a termination
    exact = np.linalg.solve(np.eye(n) - 0.9 * P_pi, R_pi)
    assert np.allclose(np.where(terminal, 0.0, V), np.where(terminal, 0.0, exact), atol=1e-9)
    assert converged and sweeps > 1
    _, capped_sweeps, capped_converged = module.policy_evaluation(
        P, R, terminal, policy, np.zeros(n), 0.9, 1e-13, 5
    )
    assert capped_sweeps == 5 and not capped_converged


@pytest.mark.parametrize("stem", ["cliff_policy_iteration", "frozenlake_policy_iteration"])
def test_policy_improvement_is_greedy_in_q_pi(stem):
    """pi'(s) = argmax_a Q_pi(s, a), with Q_pi from a loop over the env's own P (the file's tables not used)."""
    module, args, env, P, R, terminal = tables(stem, ("--is-slippery",))
    policy = np.random.default_rng(0).integers(4, size=len(terminal))
    V, _, _ = module.policy_evaluation(P, R, terminal, policy, np.zeros(len(terminal)), 0.9, 1e-12, 10_000)
    Q = np.zeros_like(R)
    for s, actions in env.unwrapped.P.items():
        for a, outcomes in actions.items():
            Q[s, a] = sum(p * (r + 0.9 * (0.0 if done else V[s2])) for p, s2, r, done in outcomes)
    improved = module.policy_improvement(P, R, terminal, V, 0.9, 1e-9)
    assert np.allclose(
        Q[np.arange(len(Q)), improved], Q.max(axis=1), rtol=0, atol=1e-8
    )  # ties: any best action


@pytest.mark.parametrize("cap", ["1", "3"])
@pytest.mark.parametrize("env, argv", [("cliff", ("--is-slippery",)), ("frozenlake", ("--map-name", "8x8"))])
def test_policy_iteration_with_capped_evaluations_still_reaches_v_star(env, argv, cap):
    """Evaluations cut short (modified policy iteration) never declare a policy stable too early."""
    V_vi, policy_vi, _ = solve(f"{env}_value_iteration", argv)
    V_pi, policy_pi, _ = solve(f"{env}_policy_iteration", (*argv, "--max-evaluation-sweeps", cap))
    assert np.allclose(V_pi, V_vi, rtol=0, atol=1e-9) and np.array_equal(policy_pi, policy_vi)


def test_greedy_policy_breaks_near_ties_to_the_lowest_action():
    module = load_algo("cliff_value_iteration")
    Q = np.array([[0.0, 1.0, 1.0 - 1e-12, 0.5], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 1.0]])
    assert module.greedy_policy(Q, 1e-8).tolist() == [1, 0, 3]
    assert module.greedy_policy(Q, 0.6).tolist() == [1, 0, 3]
    assert module.greedy_policy(Q, 1.0).tolist() == [0, 0, 0]


# ---------------------------------------------------------------- CliffWalking: known answers
def cliff_distances() -> np.ndarray:
    """Fewest steps from every non-cliff cell to the goal (breadth-first search on the grid)."""
    cliff = {37, 38, 39, 40, 41, 42, 43, 44, 45, 46}
    dist, queue = {CLIFF_GOAL: 0}, deque([CLIFF_GOAL])
    while queue:
        s = queue.popleft()
        r, c = divmod(s, 12)
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            s2 = rr * 12 + cc
            if 0 <= rr < 4 and 0 <= cc < 12 and s2 not in cliff and s2 not in dist:
                dist[s2] = dist[s] + 1
                queue.append(s2)
    out = np.full(48, -1)
    out[list(dist)] = list(dist.values())
    return out


@pytest.mark.parametrize("stem", CLIFF)
@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_cliff_values_are_discounted_shortest_paths(stem, gamma):
    V, policy, _ = solve(stem, ("--gamma", str(gamma)))
    d = cliff_distances()
    reachable = d >= 0
    expected = -d if gamma == 1.0 else -(1 - gamma**d) / (1 - gamma)  # sum of d rewards of -1
    assert np.allclose(V[reachable], expected[reachable], atol=1e-9)


@pytest.mark.parametrize("stem", CLIFF)
def test_cliff_greedy_policy_walks_the_13_step_path(stem, runs_dir):
    summary, V, policy = run_model(stem, [], runs_dir)
    assert summary["eval_return_mean"] == -13.0 and summary["eval_return_std"] == 0.0
    assert summary["eval_length_mean"] == 13.0 and summary["success_rate"] == 1.0
    assert summary["start_state_value"] == pytest.approx(-(1 - 0.99**13) / 0.01, abs=1e-9)
    path, s = [CLIFF_START], CLIFF_START
    moves = {UP: -12, RIGHT: 1, DOWN: 12, LEFT: -1}
    while s != CLIFF_GOAL and len(path) < 50:
        s += moves[int(policy[s])]
        path.append(s)
    assert path == [36, *range(24, 36), 47]  # up, eleven steps right along the edge, down
    assert summary["iterations"] >= 1 and summary["num_updates"] >= summary["iterations"]


# ---------------------------------------------------------------- policy iteration == value iteration
@pytest.mark.parametrize(
    "env, argv",
    [
        ("cliff", ()),
        ("cliff", ("--is-slippery",)),
        ("cliff", ("--gamma", "0.9")),
        ("frozenlake", ()),
        ("frozenlake", ("--no-is-slippery",)),
        ("frozenlake", ("--map-name", "8x8")),
        ("frozenlake", ("--map-name", "8x8", "--gamma", "0.999")),
    ],
)
def test_policy_and_value_iteration_agree(env, argv):
    V_pi, policy_pi, _ = solve(f"{env}_policy_iteration", argv)
    V_vi, policy_vi, _ = solve(f"{env}_value_iteration", argv)
    assert np.allclose(V_pi, V_vi, rtol=0, atol=1e-9)
    assert np.array_equal(policy_pi, policy_vi)


@pytest.mark.parametrize("env", ["cliff", "frozenlake"])
def test_policy_and_value_iteration_runs_agree(env, runs_dir):
    argv = ["--eval-episodes", "20"]
    summary_pi, V_pi, policy_pi = run_model(f"{env}_policy_iteration", argv, runs_dir)
    summary_vi, V_vi, policy_vi = run_model(f"{env}_value_iteration", argv, runs_dir)
    assert np.allclose(V_pi, V_vi, rtol=0, atol=1e-9) and np.array_equal(policy_pi, policy_vi)
    assert summary_pi["eval_return_mean"] == summary_vi["eval_return_mean"]  # same policy, same seed


# ---------------------------------------------------------------- FrozenLake
@pytest.mark.parametrize("stem", LAKE)
def test_frozenlake_without_slip_takes_the_shortest_path(stem, runs_dir):
    summary = run_algo(stem, ["--no-is-slippery", "--eval-episodes", "3"], runs_dir)
    assert summary["success_rate"] == 1.0 and summary["eval_length_mean"] == 6.0
    assert summary["start_state_value"] == pytest.approx(0.99**5)  # the reward 1 comes on the sixth step


@pytest.mark.parametrize("map_name, best", [("4x4", 0.7401), ("8x8", 0.6310)])
def test_frozenlake_default_gamma_is_near_the_best_policy_under_the_time_limit(map_name, best):
    """Exact success probabilities within 100 steps; `best` is the best stationary policy found
    by local search over single-state changes (docs/algorithms/frozenlake_value_iteration.md)."""
    module, args, env, P, R, terminal = tables("frozenlake_value_iteration", ("--map-name", map_name))
    goal = np.flatnonzero(env.unwrapped.desc.ravel() == b"G")

    def success(gamma: float) -> float:
        _, policy, _ = solve("frozenlake_value_iteration", ("--map-name", map_name, "--gamma", str(gamma)))
        return success_within(P, terminal, goal, policy, 0, args.max_episode_steps)

    assert success(args.gamma) >= best
    assert success(0.9) < best - 0.01  # too short-sighted: risks holes to arrive sooner
    if map_name == "8x8":
        assert success(0.999) < best - 0.05  # too patient: safe, but the time limit cuts it short


@pytest.mark.learning
@pytest.mark.parametrize("stem", LAKE)
@pytest.mark.parametrize("map_name, exact", [("4x4", 0.7402), ("8x8", 0.6317)])
def test_frozenlake_success_rate_over_1000_episodes(stem, map_name, exact, runs_dir):
    """Defaults and seeds 1, 2: the measured rate is within 3 standard errors of the exact one."""
    for seed in (1, 2):
        summary = run_algo(stem, ["--map-name", map_name, "--seed", str(seed)], runs_dir)
        assert summary["eval_episodes"] == 1000
        tolerance = 3 * np.sqrt(exact * (1 - exact) / 1000)
        assert abs(summary["success_rate"] - exact) < tolerance, summary
        assert summary["eval_return_mean"] == summary["success_rate"]


# ---------------------------------------------------------------- save, load, bad input
@pytest.mark.parametrize("stem", CLIFF + LAKE)
def test_load_with_zero_iterations_only_evaluates(stem, runs_dir):
    saved = run_algo(stem, ["--eval-episodes", "20", "--save-model"], runs_dir / "a")
    path = os.path.join(saved["run_dir"], "model.npz")
    loaded = run_algo(
        stem, ["--eval-episodes", "20", "--load-model", path, "--max-iterations", "0"], runs_dir / "b"
    )
    assert loaded["iterations"] == 0 and loaded["num_updates"] == 0
    assert loaded["start_state_value"] == saved["start_state_value"]
    assert loaded["eval_return_mean"] == saved["eval_return_mean"]
    resumed = run_algo(stem, ["--eval-episodes", "20", "--load-model", path], runs_dir / "c")
    assert resumed["iterations"] <= 2  # a converged plan is already stable


@pytest.mark.parametrize("stem", CLIFF + LAKE)
def test_bad_model_files_are_one_line(stem, tmp_path):
    n = 48 if stem.startswith("cliff") else 16
    V, policy = np.zeros(n), np.zeros(n, dtype=np.int64)
    bad = {
        "missing.npz": None,
        "garbage.npz": b"not an npz file" * 10,
        "no_policy.npz": {"V": V},
        "wrong_shape.npz": {"V": np.zeros(n + 1), "policy": policy},
        "string_values.npz": {"V": V.astype(str), "policy": policy},
        "string_policy.npz": {"V": V, "policy": policy.astype(str)},
        "nan_values.npz": {"V": np.full(n, np.nan), "policy": policy},
        "float_policy.npz": {"V": V, "policy": policy + 0.5},
        "action_out_of_range.npz": {"V": V, "policy": policy + 4},
        "negative_action.npz": {"V": V, "policy": policy - 1},
        "objects.npz": {"V": np.full(n, None, dtype=object), "policy": policy},
    }
    assert_bad_files_rejected(stem, "--load-model", bad, tmp_path)


def test_a_4x4_model_does_not_load_on_8x8(runs_dir):
    saved = run_algo("frozenlake_value_iteration", ["--eval-episodes", "1", "--save-model"], runs_dir / "a")
    path = os.path.join(saved["run_dir"], "model.npz")
    with pytest.raises(SystemExit, match="load-model"):
        run_algo("frozenlake_value_iteration", ["--map-name", "8x8", "--load-model", path], runs_dir / "b")
    assert not (runs_dir / "b").exists()


@pytest.mark.parametrize(
    "stem, argv, flag",
    [
        ("frozenlake_value_iteration", ["--map-name", "5x5"], "--map-name"),
        ("frozenlake_policy_iteration", ["--theta", "0"], "--theta"),
        ("cliff_policy_iteration", ["--max-evaluation-sweeps", "0"], "--max-evaluation-sweeps"),
        ("cliff_value_iteration", ["--env-id", "FrozenLake-v1"], "FrozenLake-v1"),
        ("cliff_value_iteration", ["--max-episode-steps", "0"], "--max-episode-steps"),
    ],
)
def test_dp_bad_input(stem, argv, flag, runs_dir):
    with pytest.raises(SystemExit) as exit_info:
        run_algo(stem, argv, runs_dir)
    assert str(exit_info.value.code).startswith("error:") and flag in str(exit_info.value.code)
    assert not runs_dir.exists()
