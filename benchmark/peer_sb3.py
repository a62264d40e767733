"""One Stable-Baselines3 peer run with rl-zoo3's tuned hyperparameters (used by benchmark/run.py).

python benchmark/peer_sb3.py --algo dqn --env-id CartPole-v1 --seed 1 --out DIR [--total-steps N]

Writes DIR/episodes.csv (step, unix time, return of each training episode) and prints one JSON
line like the algos/ files' summary. Training stops early once the mean of the last 10 training
episodes reaches --stop-at (the benchmark only needs the time to threshold). The hyperparameters
are read from the installed rl_zoo3 package's hyperparams/<algo>.yml, not copied by hand.
"""

import argparse
import importlib.resources
import json
import os
import time

import numpy as np
import yaml


def zoo_hyperparams(algo: str, env_id: str) -> dict:
    path = importlib.resources.files("rl_zoo3") / "hyperparams" / f"{algo}.yml"
    return dict(yaml.safe_load(path.read_text())[env_id])


def schedule(value):
    """rl-zoo3 writes linear schedules as 'lin_<start>'."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["dqn", "ppo", "sac", "ddpg", "td3", "trpo"], required=True)
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--total-steps", type=int, default=None, help="default: the zoo's n_timesteps")
    parser.add_argument("--stop-at", type=float, default=None, help="stop when the last-10 mean reaches it")
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

    hp = zoo_hyperparams(cli.algo, cli.env_id)
    total_steps = int(cli.total_steps or hp.pop("n_timesteps"))
    hp.pop("n_timesteps", None)
    n_envs = hp.pop("n_envs", 1)
    policy = hp.pop("policy")
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = schedule(hp[key])
    if "policy_kwargs" in hp:
        hp["policy_kwargs"] = eval(hp["policy_kwargs"])  # the zoo's own format: "dict(net_arch=[...])"
    noise_type, noise_std = hp.pop("noise_type", None), hp.pop("noise_std", None)
    env = make_vec_env(cli.env_id, n_envs=n_envs, seed=cli.seed)
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
               "hyperparams": {k: str(v) for k, v in zoo_hyperparams(cli.algo, cli.env_id).items()}}  # fmt: skip
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
