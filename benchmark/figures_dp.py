"""Figures and numbers for the dynamic-programming pages (policy and value iteration).

Plans with the files' own functions and runs their `main` in-process, one at a time:

- docs/figures/dp_values.png: V* as heatmaps with the greedy policy's arrows, for CliffWalking-v1
  and FrozenLake-v1 4x4 and 8x8 (slippery), each file's defaults.
- docs/figures/dp_gamma.png: FrozenLake success rate under the 100-step limit against gamma:
  exact (the policy's Markov chain propagated for 100 steps), measured (1000 episodes, seed 1),
  the best stationary policy found by local search, and the best non-stationary policy (an
  upper bound: finite-horizon dynamic programming over the 100 steps).

Prints the tables the docs quote (gamma sweep; defaults over seeds).

    python benchmark/figures_dp.py --seeds 5
"""

import argparse
import contextlib
import io
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from algo_loader import load_algo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
GAMMAS = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999]


def plan(module, **overrides):
    """The file's planning loop without the run: (args, env, P, R, terminal, V, policy)."""
    args = module.Args(progress=False, **overrides)
    env = module.make_env(args)
    P, R, terminal = module.transition_tables(env)
    V, policy = np.zeros(len(terminal)), np.zeros(len(terminal), dtype=np.int64)
    for _ in range(args.max_iterations):
        V, policy, _, converged = module.dp_iteration(P, R, terminal, V, policy, args)
        if converged:
            break
    return args, env, P, R, terminal, V, policy


def run(module, runs_dir: str, **overrides) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return module.main(module.Args(progress=False, runs_dir=runs_dir, **overrides))


def success_within(P, terminal, goal, policy, horizon: int) -> float:
    """Exact probability of reaching the goal within `horizon` steps from state 0."""
    P_pi = P[np.arange(len(policy)), policy]  # [S, S']
    d, success = np.eye(len(policy))[0], 0.0
    for _ in range(horizon):
        d = d @ P_pi
        success += d[goal].sum()
        d[terminal] = 0.0
    return success


def best_nonstationary(P, terminal, goal, horizon: int) -> float:
    """Finite-horizon DP: the best success probability any (time-dependent) policy can reach."""
    reach_goal = P[:, :, goal].sum(axis=2)  # [S, A]
    W = np.zeros(len(terminal))
    for _ in range(horizon):
        W = np.where(terminal, 0.0, (reach_goal + P @ np.where(terminal, 0.0, W)).max(axis=1))
    return W[0]


def local_search(P, terminal, goal, policy, horizon: int) -> float:
    """Hill-climb over single-state action changes, scoring the exact success within the horizon."""
    best = success_within(P, terminal, goal, policy, horizon)
    improved = True
    while improved:
        improved = False
        for s in np.flatnonzero(~terminal):
            for a in range(P.shape[1]):
                candidate = policy.copy()
                candidate[s] = a
                score = success_within(P, terminal, goal, candidate, horizon)
                if score > best + 1e-12:
                    policy, best, improved = candidate, score, True
    return best


def heatmap(ax, V, policy, labels, arrows, title):
    grid = np.where(labels == "", V.reshape(labels.shape), np.nan).astype(float)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.85")  # cliff, holes and goal: grey, with their letter
    image = ax.imshow(grid, cmap=cmap)
    for (row, col), mark in np.ndenumerate(labels):
        text = mark or arrows[policy.reshape(labels.shape)[row, col]]
        ax.text(col, row, text, ha="center", va="center", fontsize=9, fontweight="bold" if mark else "normal")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    plt.colorbar(image, ax=ax, fraction=0.046 if labels.shape[0] == labels.shape[1] else 0.015, pad=0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5, help="evaluation seeds for the defaults table")
    options = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    cliff, lake = load_algo("cliff_value_iteration"), load_algo("frozenlake_value_iteration")
    runs_dir = tempfile.mkdtemp(prefix="figures_dp_")

    # V* heatmaps with the greedy arrows (missing cells: cliff, holes, goal)
    fig = plt.figure(figsize=(11, 6.2))
    axes = [fig.add_subplot(2, 1, 1), fig.add_subplot(2, 2, 3), fig.add_subplot(2, 2, 4)]
    for ax, (module, overrides, title) in zip(
        axes,
        [
            (cliff, {}, "CliffWalking-v1, gamma 0.99: V* and greedy policy"),
            (lake, {}, "FrozenLake-v1 4x4 slippery, gamma 0.99"),
            (lake, {"map_name": "8x8"}, "FrozenLake-v1 8x8 slippery, gamma 0.99"),
        ],
    ):
        args, env, P, R, terminal, V, policy = plan(module, **overrides)
        heatmap(ax, V, policy, module.grid_labels(env), module.ARROWS, title)
    fig.tight_layout()
    fig.savefig(FIGURES / "dp_values.png", dpi=110)
    plt.close(fig)

    # success under the 100-step limit against gamma
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    print(
        "| map | gamma | sweeps | V*(start) | exact success within 100 steps | measured (1000 episodes, seed 1) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for ax, map_name in zip(axes, ["4x4", "8x8"]):
        exact, measured, searched = [], [], 0.0
        for gamma in GAMMAS:
            args, env, P, R, terminal, V, policy = plan(lake, map_name=map_name, gamma=gamma)
            goal = np.flatnonzero(env.unwrapped.desc.ravel() == b"G")
            exact.append(success_within(P, terminal, goal, policy, args.max_episode_steps))
            searched = max(searched, local_search(P, terminal, goal, policy, args.max_episode_steps))
            summary = run(lake, runs_dir, map_name=map_name, gamma=gamma)
            measured.append(summary["success_rate"])
            print(
                f"| {map_name} | {gamma} | {summary['iterations']} | {summary['start_state_value']:.4f} "
                f"| {exact[-1]:.4f} | {measured[-1]:.3f} |"
            )
        upper = best_nonstationary(P, terminal, goal, args.max_episode_steps)
        print(f"| {map_name} | best stationary found | | | {searched:.4f} | |")
        print(f"| {map_name} | best non-stationary | | | {upper:.4f} | |")
        x = np.arange(len(GAMMAS))
        ax.plot(x, exact, "o-", label="greedy policy, exact")
        ax.plot(x, measured, "x", label="measured, 1000 episodes")
        ax.axhline(searched, color="gray", ls="--", lw=1, label=f"best stationary found {searched:.3f}")
        ax.axhline(upper, color="gray", ls=":", lw=1, label=f"best non-stationary {upper:.3f}")
        ax.set_xticks(x, [str(g) for g in GAMMAS], fontsize=8)
        ax.set_xlabel("gamma")
        ax.set_ylabel("success within 100 steps")
        ax.set_title(f"FrozenLake-v1 {map_name} slippery", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(FIGURES / "dp_gamma.png", dpi=110)
    plt.close(fig)

    # every file with its defaults, evaluation seeds 1..N
    print(
        "\n| file | setting | iterations | sweeps | start_state_value | eval_return_mean (median, worst) | success_rate (median, worst) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for stem in [
        "cliff_policy_iteration",
        "cliff_value_iteration",
        "frozenlake_policy_iteration",
        "frozenlake_value_iteration",
    ]:
        module = load_algo(stem)
        for overrides in [{}] if stem.startswith("cliff") else [{}, {"map_name": "8x8"}]:
            summaries = [
                run(module, runs_dir, seed=seed, **overrides) for seed in range(1, options.seeds + 1)
            ]
            returns = [s["eval_return_mean"] for s in summaries]
            rates = [s["success_rate"] for s in summaries]
            first = summaries[0]
            print(
                f"| {stem} | {overrides.get('map_name', 'default')} | {first['iterations']} | {first['num_updates']} "
                f"| {first['start_state_value']:.4f} | {statistics.median(returns):.3f}, {min(returns):.3f} "
                f"| {statistics.median(rates):.3f}, {min(rates):.3f} |"
            )


if __name__ == "__main__":
    main()
