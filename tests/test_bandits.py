"""Bandit family: unit tests of each `choose_arm`, the sample-mean estimates, and learning tests.

The learning tests compare the five strategies at their defaults (5000 pulls, 200 bandits) against
each other and against a uniformly random policy (epsilon-greedy with `--epsilon 1`).
"""

import contextlib
import io
import os

import numpy as np
import pytest
from conftest import assert_bad_files_rejected, load_algo, run_algo, smoke_args

BANDITS = [
    "bandit_epsilon_greedy",
    "bandit_decaying_epsilon_greedy",
    "bandit_ucb",
    "bandit_thompson_sampling",
    "bandit_softmax",
]
R, K = 4000, 4  # bandits and arms of the unit tests: enough draws for 3-sigma tolerances


@pytest.fixture(scope="module")
def modules():
    return {stem: load_algo(stem) for stem in BANDITS}


def pick(module, q, n, t=0, seed=0, **overrides):
    """Call module.choose_arm on [R, K] arrays with the file's default Args, overridden."""
    args = module.Args(**overrides)
    return module.choose_arm(np.asarray(q, float), np.asarray(n, float), t, np.random.default_rng(seed), args)


def frequencies(arms: np.ndarray, num_arms: int = K) -> np.ndarray:
    return np.bincount(arms, minlength=num_arms) / len(arms)


def tolerance(p: float, draws: int = R) -> float:
    return 4 * np.sqrt(p * (1 - p) / draws) + 1e-9


# distinct estimates, the greedy arm is 2 in every row
Q = np.tile([0.2, 0.5, 0.9, 0.4], (R, 1))
N = np.full((R, K), 50.0)


# ---------------------------------------------------------------- every strategy
@pytest.mark.parametrize("stem", BANDITS)
def test_choose_arm_returns_one_valid_arm_per_bandit(modules, stem):
    arms = pick(modules[stem], Q, N, t=200)
    assert arms.shape == (R,) and np.issubdtype(arms.dtype, np.integer)
    assert arms.min() >= 0 and arms.max() < K


# ---------------------------------------------------------------- epsilon-greedy (fixed and decaying)
def test_epsilon_greedy_explores_with_probability_epsilon(modules):
    m = modules["bandit_epsilon_greedy"]
    assert (pick(m, Q, N, epsilon=0.0) == 2).all()
    assert np.abs(frequencies(pick(m, Q, N, epsilon=1.0)) - 1 / K).max() < tolerance(1 / K)
    freq = frequencies(pick(m, Q, N, epsilon=0.2))
    expected = np.full(K, 0.2 / K) + np.eye(K)[2] * 0.8
    assert np.abs(freq - expected).max() < tolerance(0.8)


@pytest.mark.parametrize(
    "stem, greedy",
    [("bandit_epsilon_greedy", {"epsilon": 0.0}), ("bandit_decaying_epsilon_greedy", {"epsilon_scale": 0.0})],
)
def test_greedy_ties_are_broken_at_random(modules, stem, greedy):
    """Sutton & Barto 2.4: equal estimates get equal chances. argmax's lowest index would stick to arm 0 at
    the start (all Q = 0) and to arm 1 here."""
    m = modules[stem]
    freq = frequencies(pick(m, np.tile([0.3, 0.7, 0.7, 0.7], (R, 1)), N, **greedy))
    assert freq[0] == 0 and np.abs(freq[1:] - 1 / 3).max() < tolerance(1 / 3), freq
    freq = frequencies(pick(m, np.zeros((R, K)), np.zeros((R, K)), **greedy))
    assert np.abs(freq - 1 / K).max() < tolerance(1 / K), freq


def test_decaying_epsilon_follows_c_over_t(modules):
    m = modules["bandit_decaying_epsilon_greedy"]
    none = np.zeros((R, K))
    assert np.abs(frequencies(pick(m, Q, none, epsilon_scale=10.0)) - 1 / K).max() < tolerance(1 / K)
    # t-th pull with t = N.sum + 1: epsilon = min(1, c / t) = 10 / 100 here
    n = np.tile([40.0, 30.0, 20.0, 9.0], (R, 1))
    freq = frequencies(pick(m, Q, n, epsilon_scale=10.0))
    expected = np.full(K, 0.1 / K) + np.eye(K)[2] * 0.9
    assert np.abs(freq - expected).max() < tolerance(0.9)
    assert (pick(m, Q, n * 1e6, epsilon_scale=10.0) == 2).mean() > 0.999
    assert (pick(m, Q, n, epsilon_scale=0.0) == 2).all()


# ---------------------------------------------------------------- UCB
def test_ucb_pulls_every_arm_once_first(modules):
    m = modules["bandit_ucb"]
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(50, 7))
    q, n = np.zeros((50, 7)), np.zeros((50, 7))
    runs = np.arange(50)
    args = m.Args()
    for t in range(7):
        arms = m.choose_arm(q, n, t, rng, args)
        assert (n[runs, arms] == 0).all(), f"pull {t} repeated an arm before every arm was tried"
        rewards = (rng.random(50) < probs[runs, arms]).astype(float)
        n[runs, arms] += 1
        q[runs, arms] += (rewards - q[runs, arms]) / n[runs, arms]
    assert (n == 1).all()


def test_ucb_matches_the_ucb1_formula(modules):
    m = modules["bandit_ucb"]
    rng = np.random.default_rng(1)
    q, n = rng.uniform(size=(300, 5)), rng.integers(1, 40, size=(300, 5)).astype(float)
    for c in (0.0, 0.5, np.sqrt(2)):
        bound = q + c * np.sqrt(np.log(n.sum(axis=1, keepdims=True)) / n)
        assert (pick(m, q, n, ucb_c=c) == bound.argmax(axis=1)).all()
    # same estimate, fewer pulls: the bonus prefers the less-tried arm; c = 0 is greedy
    assert (pick(m, [[0.5, 0.5]], [[10, 90]]) == 0).all()
    assert (pick(m, [[0.5, 0.6]], [[1, 99]], ucb_c=0.0) == 1).all()


# ---------------------------------------------------------------- Thompson sampling
def test_thompson_samples_the_probability_of_being_best(modules):
    m = modules["bandit_thompson_sampling"]
    # arm 0: one success -> Beta(2, 1); arm 1: no data -> Beta(1, 1); P(theta_0 > theta_1) = 2/3
    q, n = np.tile([1.0, 0.0], (R, 1)), np.tile([1.0, 0.0], (R, 1))
    assert abs((pick(m, q, n) == 0).mean() - 2 / 3) < tolerance(2 / 3)
    # no data, uniform prior: every arm equally likely
    assert np.abs(frequencies(pick(m, np.zeros((R, K)), np.zeros((R, K)))) - 1 / K).max() < tolerance(1 / K)
    # plenty of data: the posterior is sharp and the greedy arm wins
    assert (pick(m, Q, N * 1000) == 2).all()


def test_thompson_strong_prior_outweighs_little_data(modules):
    m = modules["bandit_thompson_sampling"]
    n = np.full((R, K), 20.0)  # Q N = 4, 10, 18, 8 successes in 20 pulls
    weak = pick(m, Q, n, prior_alpha=1.0, prior_beta=1.0)
    strong = pick(m, Q, n, prior_alpha=1e5, prior_beta=1e5)
    assert (weak == 2).mean() > 0.95
    assert np.abs(frequencies(strong) - 1 / K).max() < 0.05, "Beta(1e5, 1e5) should make the arms look alike"


# ---------------------------------------------------------------- softmax
def test_softmax_probabilities_follow_the_temperature(modules):
    m = modules["bandit_softmax"]
    assert (pick(m, Q, N, temperature=1e-6) == 2).all(), "tiny temperature is greedy"
    assert np.abs(frequencies(pick(m, Q, N, temperature=1e6)) - 1 / K).max() < tolerance(1 / K)
    expected = np.exp(Q[0] / 0.2) / np.exp(Q[0] / 0.2).sum()
    freq = frequencies(pick(m, Q, N, temperature=0.2))
    assert np.abs(freq - expected).max() < tolerance(expected.max())
    assert (pick(m, Q * 1e4, N, temperature=1e-3) == 2).all(), "large Q / tau must not overflow"


# ---------------------------------------------------------------- the shared estimates
@pytest.mark.parametrize("stem", BANDITS)
def test_estimates_are_sample_means(stem, runs_dir):
    """Rewards are 0/1, so a correct incremental mean keeps Q in [0, 1] with Q N a whole count."""
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run_algo(stem, ["--total-steps", "300", "--num-runs", "50", "--save-model"], runs_dir)
    with np.load(os.path.join(summary["run_dir"], "model.npz")) as data:
        q, n = data["q"], data["n"]
    assert (n.sum(axis=1) == 300).all()
    assert (q >= 0).all() and (q <= 1).all()
    np.testing.assert_allclose(q * n, np.rint(q * n), atol=1e-8)
    assert np.rint(q * n).sum() == pytest.approx(summary["total_reward"] * 50)
    # regret is expected, sum_t p* - p_{a_t}: the bandits are main's first draw from the seed
    probs = np.random.default_rng(1).uniform(size=(50, 10))
    expected = (n * (probs.max(axis=1, keepdims=True) - probs)).sum(axis=1)
    assert summary["regret"] == pytest.approx(expected.mean())
    assert summary["best_arm_expected_reward"] == pytest.approx(probs.max(axis=1).mean())


# ---------------------------------------------------------------- bad input of the family
@pytest.mark.parametrize("stem", BANDITS)
def test_bad_model_files_are_one_line(stem, tmp_path):
    q, n = np.full((4, 10), 0.5), np.full((4, 10), 3.0)  # the smoke budget's R = 4 bandits, K = 10 arms
    bad = {
        "missing.npz": None,
        "not_an_npz.npz": b"not a model" * 10,
        "other_keys.npz": {"q": q, "counts": n},
        "other_shape.npz": {"q": q[:, :3], "n": n[:, :3]},
        "strings.npz": {"q": q.astype(str), "n": n},
        "objects.npz": {"q": q.astype(object), "n": n},
        "nan.npz": {"q": np.where(q > 0, np.nan, q), "n": n},
        "inf_counts.npz": {"q": q, "n": np.full_like(n, np.inf)},
        "negative_counts.npz": {"q": q, "n": -n},
    }
    assert_bad_files_rejected(stem, "--load-model", bad, tmp_path)


@pytest.mark.parametrize("stem", BANDITS)
def test_impossible_runs_are_one_line_before_any_file(stem, tmp_path):
    cases = [
        (["--capture-video"], "capture-video"),
        (["--total-steps", str(10**12)], "total-steps"),
        (["--num-runs", str(10**12)], "num-runs"),
        (["--num-arms", "1"], "num-arms"),
    ]
    for argv, flag in cases:
        with pytest.raises(SystemExit) as exit_info:
            run_algo(stem, [*smoke_args(stem), *argv], tmp_path / "runs")
        message = exit_info.value.code
        assert isinstance(message, str) and message.startswith("error:") and "\n" not in message, argv
        assert flag in message, (argv, message)
        assert not (tmp_path / "runs").exists(), argv


# ---------------------------------------------------------------- learning
def regrets(seed: int, tmp_path) -> dict[str, dict]:
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for stem in BANDITS:
            out[stem] = run_algo(stem, ["--seed", str(seed)], tmp_path / stem)
        out["uniform"] = run_algo(
            "bandit_epsilon_greedy", ["--seed", str(seed), "--epsilon", "1"], tmp_path / "u"
        )
    return out


@pytest.mark.learning
@pytest.mark.parametrize("seed", [1, 2])
def test_regret_ordering_at_defaults(seed, tmp_path):
    """Defaults, 200 bandits x 5000 pulls: the ordering of the bandit comparison page."""
    s = regrets(seed, tmp_path)
    regret = {stem: summary["regret"] for stem, summary in s.items()}
    fixed = regret["bandit_epsilon_greedy"]
    assert regret["bandit_thompson_sampling"] < 0.25 * fixed, regret
    assert regret["bandit_ucb"] < 0.35 * fixed, regret
    assert (
        regret["bandit_thompson_sampling"] < regret["bandit_ucb"] < regret["bandit_decaying_epsilon_greedy"]
    ), regret
    assert regret["bandit_decaying_epsilon_greedy"] < 0.5 * fixed, regret
    for stem in BANDITS:
        assert regret[stem] < 0.2 * regret["uniform"], (stem, regret)
        # the arm each strategy ends up believing best is (nearly always) the best arm
        gap = s[stem]["best_arm_expected_reward"] - s[stem]["eval_return_mean"]
        assert gap < (0.03 if stem != "bandit_epsilon_greedy" else 0.06), (stem, gap)
    # uniform random loses the mean gap p* - mean(p) ~ 10/11 - 1/2 on every pull
    assert regret["uniform"] == pytest.approx(5000 * (10 / 11 - 1 / 2), rel=0.05)
