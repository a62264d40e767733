"""Every deep file on harder environments of its kind than its default: tiny budgets that still update.

Discrete-action files on Acrobot-v1 (three actions, -1 per step, truncated at 500) and LunarLander-v3
(Box2D: eight observations, four actions, episodes that end by landing or crashing); continuous-action
files on InvertedPendulum-v5 (MuJoCo, terminates when the pole falls, action bounds +-3) and
HalfCheetah-v5 (MuJoCo, a six-dimensional action box, 17 observations), and Reacher-v5 (a two-dimensional
box that benchmark/harder.toml does not name); the discretised-torque DQN family on InvertedPendulum-v5 and
InvertedDoublePendulum-v5 (its kind: one action dimension); behaviour cloning where GAIL runs. These prove that shapes,
bounds and terminations are read from the spaces; whether a file learns there is the benchmark's
question. The Box2D and MuJoCo extras come with requirements.txt; without them these tests skip.
"""

import importlib.util
import math

import pytest
from conftest import STEMS, assert_summary, run_algo, smoke_args

DISCRETE = ["dqn_cartpole", "reinforce_cartpole", "actor_critic_cartpole", "ppo_cartpole", "trpo_cartpole",
            "sac_discrete_cartpole", "gail_cartpole"]  # fmt: skip
CONTINUOUS = ["ddpg_pendulum", "td3_pendulum", "sac_pendulum", "ppo_pendulum", "cql_pendulum"]
EXTRA = {
    "LunarLander-v3": "Box2D",
    "InvertedPendulum-v5": "mujoco",
    "HalfCheetah-v5": "mujoco",
    "Reacher-v5": "mujoco",
    "InvertedDoublePendulum-v5": "mujoco",
}
CASES = [(s, e) for s in DISCRETE for e in ("Acrobot-v1", "LunarLander-v3")]
CASES += [(s, e) for s in CONTINUOUS for e in ("InvertedPendulum-v5", "HalfCheetah-v5")]
CASES += [
    ("mpc_pendulum", "InvertedPendulum-v5"),
    ("mpc_pendulum", "Reacher-v5"),
]  # the model predicts the reward
CASES += [(s, "Reacher-v5") for s in CONTINUOUS]  # a two-dimensional action box no page names
# one-dimensional torques split into n_actions: any Box action of shape (1,), float64 MuJoCo observations included
CASES += [(s, e) for s in ("dqn_pendulum", "ddqn_pendulum", "dueling_dqn_pendulum")
          for e in ("InvertedPendulum-v5", "InvertedDoublePendulum-v5")]  # fmt: skip
CASES += [("bc_cartpole", "Acrobot-v1"), ("bc_cartpole", "LunarLander-v3")]
EXTRA_ARGS = {"mpc_pendulum": ["--no-known-reward"]}


@pytest.mark.parametrize("stem,env_id", [c for c in CASES if c[0] in STEMS])
def test_runs_on_a_harder_environment(stem, env_id, runs_dir):
    module = EXTRA.get(env_id)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{env_id} needs {module}: pip install -r requirements.txt")
    summary = run_algo(stem, [*smoke_args(stem), "--env-id", env_id, *EXTRA_ARGS.get(stem, [])], runs_dir)
    assert_summary(summary)
    assert summary["env_id"] == env_id
    assert summary["num_updates"] >= 1
    assert math.isfinite(summary["eval_return_mean"])
