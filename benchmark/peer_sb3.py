"""One Stable-Baselines3 peer run with rl-zoo3's tuned hyperparameters (used by benchmark/run.py).

python benchmark/peer_sb3.py --algo dqn --env-id CartPole-v1 --seed 1 --out DIR [--total-steps N]

Writes DIR/episodes.csv (step, unix time, return of each training episode) and prints one JSON
line like the algos/ files' summary. Training stops early once the mean of the last 10 training
episodes reaches --stop-at (the benchmark only needs the time to threshold). The hyperparameters
are read from the installed rl_zoo3 package's hyperparams/<algo>.yml, not copied by hand; `--zoo-env`
reads another id's entry (the zoo tunes HalfCheetah-v4, we run v5), `--zoo-env none` takes SB3's
defaults where the zoo has no entry. The zoo's `normalize` is applied as its VecNormalize. With
`--eval-episodes N` the deterministic policy is evaluated after training, as the algos/ files do:
episode starts drawn from numpy.random.default_rng([seed, 1]), never a training reset's.
"""

import argparse
import importlib.resources
import json
import os
import time

import numpy as np
import yaml

# --algo: Stable-Baselines3's algorithms (trpo: sb3-contrib's)
ALGOS = ("dqn", "ppo", "a2c", "sac", "ddpg", "td3", "trpo")
UNSUPPORTED = (
    "env_wrapper",
    "frame_stack",
    "callback",
    "vec_env_wrapper",
)  # zoo keys this script does not apply


def zoo_hyperparams(algo: str, env_id: str) -> dict:
    if env_id == "none":  # no zoo entry: SB3's own defaults
        return {"policy": "MlpPolicy"}
    path = importlib.resources.files("rl_zoo3") / "hyperparams" / f"{algo}.yml"
    table = yaml.safe_load(path.read_text())
    if env_id not in table:
        raise SystemExit(
            f"error: rl-zoo3 tunes no {algo} for {env_id}: give --zoo-env with one it has, or 'none'"
        )
    hp = dict(table[env_id])
    unsupported = [key for key in UNSUPPORTED if key in hp]
    if unsupported:
        raise SystemExit(
            f"error: the zoo's {algo} entry for {env_id} needs {', '.join(unsupported)}, not applied here"
        )
    return hp


def policy_kwargs(text: str) -> dict:
    """The zoo writes policy_kwargs as Python source ("dict(net_arch=[64], activation_fn=nn.ReLU)")."""
    import torch

    return eval(text, {"dict": dict, "nn": torch.nn})


def schedule(value):
    """rl-zoo3 writes linear schedules as 'lin_<start>'."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=ALGOS, required=True)
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--total-steps", type=int, default=None, help="default: the zoo's n_timesteps")
    parser.add_argument("--stop-at", type=float, default=None, help="stop when the last-10 mean reaches it")
    parser.add_argument(
        "--zoo-env", default=None, help="read the zoo's entry of this id ('none': SB3 defaults)"
    )
    parser.add_argument("--eval-episodes", type=int, default=0, help="deterministic episodes after training")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="as the algos/ files (their default is 1)"
    )
    cli = parser.parse_args()
    import torch

    torch.set_num_threads(cli.torch_threads)  # torch's default (all cores) oversubscribes 2 parallel runs

    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    zoo_env = cli.zoo_env or cli.env_id
    hp = zoo_hyperparams(cli.algo, zoo_env)
    if cli.total_steps is None and "n_timesteps" not in hp:
        raise SystemExit("error: --zoo-env none has no n_timesteps: give --total-steps")
    total_steps = int(cli.total_steps or hp.pop("n_timesteps"))
    hp.pop("n_timesteps", None)
    n_envs = hp.pop("n_envs", 1)
    policy = hp.pop("policy")
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = schedule(hp[key])
    if "policy_kwargs" in hp:
        hp["policy_kwargs"] = policy_kwargs(hp["policy_kwargs"])
    noise_type, noise_std = hp.pop("noise_type", None), hp.pop("noise_std", None)
    normalize = hp.pop("normalize", False)
    env = make_vec_env(cli.env_id, n_envs=n_envs, seed=cli.seed)
    if normalize:  # rl-zoo3 wraps these in VecNormalize: True, or a dict of its keyword arguments
        from stable_baselines3.common.vec_env import VecNormalize

        kwargs = eval(normalize) if isinstance(normalize, str) else {}
        env = VecNormalize(env, gamma=hp.get("gamma", 0.99), **kwargs)
    if noise_type == "normal":
        dim = env.action_space.shape[0]
        hp["action_noise"] = NormalActionNoise(np.zeros(dim), noise_std * np.ones(dim))
    if cli.algo == "trpo":  # TRPO lives in sb3-contrib, with the same constructor
        import sb3_contrib as library
    else:
        library = sb3
    model = getattr(library, cli.algo.upper())(policy, env, seed=cli.seed, verbose=0, device="cpu", **hp)

    os.makedirs(cli.out, exist_ok=True)
    episodes: list[tuple[int, float, float]] = []

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes.append((self.num_timesteps, time.time(), float(info["episode"]["r"])))
            last = [r for _, _, r in episodes[-10:]]
            return not (cli.stop_at is not None and len(last) == 10 and np.mean(last) >= cli.stop_at)

    start = time.time()
    model.learn(total_timesteps=total_steps, callback=Record())
    seconds = time.time() - start
    with open(os.path.join(cli.out, "episodes.csv"), "w") as f:
        f.write("step,time,return\n")
        f.writelines(f"{s},{t:.4f},{r}\n" for s, t, r in episodes)
    steps = model.num_timesteps
    summary = {"algo": f"sb3_{cli.algo}", "env_id": cli.env_id, "seed": cli.seed, "total_steps": steps,
               "train_seconds": round(seconds, 3), "steps_per_second": round(steps / seconds, 1),
               "zoo_env": zoo_env, "hyperparams": {k: str(v) for k, v in zoo_hyperparams(cli.algo, zoo_env).items()}}  # fmt: skip
    if cli.eval_episodes:
        returns = evaluate(model, env if normalize else None, cli.env_id, cli.seed, cli.eval_episodes)
        summary.update(eval_return_mean=float(np.mean(returns)), eval_return_std=float(np.std(returns)),
                       eval_episodes=len(returns))  # fmt: skip
    print(json.dumps(summary), flush=True)


def evaluate(model, vec_normalize, env_id: str, seed: int, episodes: int) -> list[float]:
    """Deterministic returns on start states of the evaluation's own (the algos/ files' scheme)."""
    import gymnasium as gym

    env, seeds, returns = gym.make(env_id), np.random.default_rng([seed, 1]), []
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(seeds.integers(2**31)))
        total, done = 0.0, False
        while not done:
            x = vec_normalize.normalize_obs(obs[None]) if vec_normalize is not None else obs[None]
            action, _ = model.predict(x, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return returns


if __name__ == "__main__":
    main()
