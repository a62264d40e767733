"""Unit and learning tests of algos/mpc_pendulum.py (PETS-style MPC with a learned ensemble)."""

import math
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import load_algo, run_algo, smoke_args

mpc = load_algo("mpc_pendulum")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As the file's default --torch-threads: two threads on a busy 2-core machine can be 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def call_main(args) -> dict:
    """mpc.main(args), giving SIGINT and SIGTERM back to pytest afterwards."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return mpc.main(args)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def small_args(**overrides):
    base = dict(hidden_dim=32, num_layers=2, ensemble_size=2, num_particles=2, horizon=3)
    return mpc.Args(**{**base, **overrides})


def test_cem_finds_the_optimum_of_a_quadratic():
    target = torch.tensor([[0.7], [-1.2], [0.3], [1.9]])  # [H, A], inside the bounds [-2, 2]
    args = mpc.Args(population_size=200, num_elites=20, cem_iterations=20, cem_alpha=0.1, cem_init_std=0.5)
    low, high = torch.tensor([-2.0]), torch.tensor([2.0])
    score = lambda actions: -((actions - target) ** 2).sum((1, 2))  # noqa: E731  [N, H, A] -> [N]
    mean = mpc.cem_optimize(score, torch.zeros(4, 1), low, high, args, torch.Generator().manual_seed(0))
    assert torch.allclose(mean, target, atol=0.05), mean


def test_cem_respects_the_action_bounds():
    args = mpc.Args(population_size=50, num_elites=5, cem_iterations=5)
    low, high = torch.tensor([-2.0]), torch.tensor([2.0])
    score = lambda actions: actions.sum((1, 2))  # noqa: E731  optimum at the upper bound
    mean = mpc.cem_optimize(score, torch.zeros(3, 1), low, high, args, torch.Generator().manual_seed(0))
    assert (mean <= 2.0).all() and (mean > 1.5).all(), mean


def test_ensemble_fits_a_simple_function_with_its_noise_level():
    torch.manual_seed(0)
    args = small_args(hidden_dim=64, model_epochs=60, batch_size=64, learning_rate=3e-3, weight_decay=0.0)
    x = torch.rand(800, 2) * 4 - 2  # [T, 2]
    noise_std = 0.1
    y = torch.sin(x[:, :1]) * x[:, 1:] + noise_std * torch.randn(800, 1)  # [T, 1]
    model = mpc.ProbabilisticEnsemble(2, 1, args)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss, steps = mpc.fit_model(model, optimizer, x, y, args)
    assert math.isfinite(loss) and steps == 60 * math.ceil(800 / 64)
    x_test = torch.rand(200, 2) * 4 - 2
    with torch.no_grad():
        mean, log_var = model(x_test.expand(args.ensemble_size, -1, -1))  # [K, M, 1] normalised
    prediction = mean * model.out_std + model.out_mean
    truth = torch.sin(x_test[:, :1]) * x_test[:, 1:]
    assert ((prediction - truth) ** 2).mean() < 0.02  # noise variance is 0.01
    predicted_std = (torch.exp(0.5 * log_var) * model.out_std).mean()
    assert 0.5 * noise_std < predicted_std < 2 * noise_std, predicted_std  # aleatoric noise is learned


def test_log_variance_stays_within_its_bounds():
    args = small_args()
    model = mpc.ProbabilisticEnsemble(3, 2, args)
    with torch.no_grad():
        model.biases[-1].fill_(1e4)
        _, high = model(torch.zeros(2, 5, 3))
        model.biases[-1].fill_(-1e4)
        _, low = model(torch.zeros(2, 5, 3))
    assert (high <= args.max_log_var + 1e-4).all() and (low >= args.min_log_var - 1e-4).all()


def test_nll_matches_torch_gaussian_nll():
    mean, log_var, target = torch.randn(3, 7, 2), torch.randn(3, 7, 2), torch.randn(3, 7, 2)
    ours = mpc.gaussian_nll(mean, log_var, target)
    reference = (
        2 * 3 * 2 * torch.nn.functional.gaussian_nll_loss(mean, target, log_var.exp(), reduction="mean")
    )
    assert torch.allclose(ours, reference, atol=1e-4)


def test_known_reward_is_pendulums_reward():
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    for _ in range(50):
        action = env.action_space.sample()
        next_obs, reward, *_ = env.step(action)
        ours = mpc.pendulum_reward(torch.as_tensor(obs)[None], torch.as_tensor(action)[None], 2.0)
        assert ours.item() == pytest.approx(reward, abs=1e-4)
        obs = next_obs


@pytest.mark.parametrize("propagation", ["ts1", "ts_inf"])
@pytest.mark.parametrize("known_reward", [True, False])
def test_predicted_returns_is_exact_for_a_noiseless_constant_model(propagation, known_reward):
    """Every member predicts delta = out_mean with a tiny variance: the return is known in closed form."""
    args = small_args(propagation=propagation, known_reward=known_reward, min_log_var=-30.0)
    out_dim = 3 if known_reward else 4
    model = mpc.ProbabilisticEnsemble(4, out_dim, args)
    with torch.no_grad():
        model.weights[-1].zero_()
        model.biases[-1].zero_()  # normalised mean 0: the prediction is out_mean
        model.biases[-1][..., out_dim:] = -1e4  # log-variance -> its lower bound
        model.out_mean.copy_(torch.tensor([0.0, 0.0, 0.5] + ([] if known_reward else [-1.0])))
    obs = torch.tensor([1.0, 0.0, 0.0])  # upright, at rest; theta_dot grows by 0.5 a step
    returns = mpc.predicted_returns(
        model, obs, torch.zeros(6, 3, 1), torch.tensor([2.0]), args, torch.Generator()
    )
    expected = -0.1 * sum((0.5 * t) ** 2 for t in range(3)) if known_reward else -3.0
    assert returns.shape == (6,)
    assert torch.allclose(returns, torch.full((6,), expected), atol=1e-3), returns


class TwoMembers:
    """Member k adds k to state[0] every step and predicts the reward state[0] ** 2, without noise."""

    out_mean, out_std = torch.zeros(4), torch.ones(4)

    def __call__(self, x):  # [K, M, I] -> 2 x [K, M, D]
        mean = torch.zeros(*x.shape[:2], 4)
        mean[..., 0] = torch.arange(x.shape[0], dtype=torch.float32)[:, None]
        mean[..., 3] = x[..., 0] ** 2
        return mean, torch.full_like(mean, -1e4)


def test_ts_inf_keeps_a_particle_on_one_member_and_ts1_reassigns_it():
    returns = {}
    for propagation in ("ts_inf", "ts1"):
        args = small_args(propagation=propagation, known_reward=False, ensemble_size=2, num_particles=2)
        actions, generator = torch.zeros(300, 8, 1), torch.Generator().manual_seed(0)
        returns[propagation] = mpc.predicted_returns(
            TwoMembers(), torch.zeros(3), actions, None, args, generator
        )
    # ts_inf: one particle stays at 0, the other reaches t at step t: (0 + sum_t t^2) / 2 = 70
    assert torch.allclose(returns["ts_inf"], torch.full((300,), 70.0))
    # ts1: the steps of +1 are shared at random between the two particles, so the squares are smaller
    assert returns["ts1"].max() <= 70.0 and returns["ts1"].mean() < 60.0
    assert returns["ts1"].std() > 0


class ActionModel:
    """Noiseless: theta_dot grows by the action each step; the predicted reward is -(a - 0.7)^2."""

    out_mean, out_std = torch.zeros(4), torch.ones(4)

    def __call__(self, x):  # [K, M, I = 3 + 1] -> 2 x [K, M, D = 3 + 1]
        mean = torch.zeros(*x.shape[:2], 4)
        mean[..., 2] = x[..., 3]
        mean[..., 3] = -((x[..., 3] - 0.7) ** 2)
        return mean, torch.full_like(mean, -1e4)


def test_predicted_returns_depend_on_the_planned_actions():
    """The model is fed each candidate's own actions: returns -H (a - 0.7)^2 for a constant sequence a."""
    args = small_args(known_reward=False, ensemble_size=2, num_particles=2, horizon=4)
    actions = torch.tensor([-1.0, 0.0, 0.7, 2.0])[:, None, None].expand(4, 4, 1)  # [N, H, A]
    returns = mpc.predicted_returns(ActionModel(), torch.zeros(3), actions, None, args, torch.Generator())
    assert torch.allclose(returns, -4 * (actions[:, 0, 0] - 0.7) ** 2, atol=1e-5), returns


def test_plan_action_executes_the_best_first_action():
    """MPC picks the action that maximises the predicted return (0.7 here), and shifts the plan by one."""
    args = small_args(known_reward=False, horizon=3, population_size=100, num_elites=10, cem_iterations=5)
    low, high, plan = torch.tensor([-2.0]), torch.tensor([2.0]), torch.zeros(3, 1)
    action, next_plan = mpc.plan_action(ActionModel(), np.zeros(3), plan, low, high, args, torch.Generator())
    assert abs(action[0] - 0.7) < 0.1 and next_plan.shape == (3, 1) and next_plan[-1, 0] == 0.0
    assert torch.allclose(next_plan[:2], torch.full((2, 1), 0.7), atol=0.1)


def test_an_empty_or_nan_model_file_is_one_line(tmp_path):
    """Issue 17: an empty `.pt` raised IndexError inside the error handler; NaN weights ran on."""
    empty, nan = tmp_path / "empty.pt", tmp_path / "nan.pt"
    empty.write_bytes(b"")
    model = mpc.ProbabilisticEnsemble(4, 3, mpc.Args(hidden_dim=16))
    torch.save({"model": {k: torch.full_like(v, math.nan) for k, v in model.state_dict().items()}}, nan)
    for path in (empty, nan):
        argv = [*smoke_args("mpc_pendulum"), "--load-model", str(path), "--total-steps", "0"]
        with pytest.raises(SystemExit) as error:
            run_algo("mpc_pendulum", argv, tmp_path / "runs")
        assert str(error.value.code).startswith("error:") and "\n" not in str(error.value.code)
    assert not (tmp_path / "runs").exists()


def test_truncated_episode_keeps_its_true_last_transition(tmp_path):
    """The refit sees every real transition: T rows, none from one episode's end to the next's start."""
    args = mpc.Args(total_steps=12, max_episode_steps=4, random_episodes=3, eval_episodes=1, horizon=2,
                    population_size=4, num_elites=2, cem_iterations=1, model_epochs=1, hidden_dim=8,
                    runs_dir=str(tmp_path), progress=False)  # fmt: skip
    seen = {}
    original = mpc.fit_model

    def spy(model, optimizer, inputs, targets, args):
        seen[len(inputs)] = (inputs.clone(), targets.clone())
        return original(model, optimizer, inputs, targets, args)

    mpc.fit_model = spy
    try:
        call_main(args)
    finally:
        mpc.fit_model = original
    assert sorted(seen) == [4, 8, 12]  # a refit after every episode, on all data so far
    inputs, targets = seen[12]
    env = gym.make("Pendulum-v1", max_episode_steps=4)  # replay the same seeded episodes
    env.action_space.seed(args.seed)
    obs, _ = env.reset(seed=args.seed)
    for row in range(12):
        action = env.action_space.sample()
        assert np.allclose(inputs[row].numpy(), np.concatenate([obs, action]), atol=1e-6)
        next_obs, _, terminated, truncated, _ = env.step(action)
        assert np.allclose(targets[row].numpy(), next_obs - obs, atol=1e-6)  # true s', also at truncation
        obs = next_obs
        if terminated or truncated:
            assert row % 4 == 3
            obs, _ = env.reset()


def test_smoke_budget_refits_the_model(runs_dir):
    summary = run_algo("mpc_pendulum", smoke_args("mpc_pendulum"), runs_dir)
    assert summary["num_updates"] >= 1 and summary["planning_ms_per_action"] > 0


@pytest.mark.learning
@pytest.mark.longest  # conftest runs it first: the learning suite's longest test
def test_mpc_swings_up_pendulum_within_ten_episodes(runs_dir):
    summary = run_algo("mpc_pendulum", ["--seed", "1"], runs_dir)
    assert summary["total_steps"] == 2000
    assert summary["eval_return_mean"] >= -200, summary
