"""Deep files on environments of their kind besides their defaults: the flags of benchmark/harder.toml,
over seeds, beside Stable-Baselines3 with rl-zoo3's tuned settings at the same step budget.

    python benchmark/harder.py                                    # every task, seeds 1-3, peers, page
    python benchmark/harder.py --tasks ppo_cartpole@Acrobot-v1 --seeds 4 5 6
    python benchmark/harder.py --report-only                      # rebuild docs/harder.md (+ .zh.md)

A task is `<file>@<env>`. Results go to benchmark/results/harder/<file>@<env>.json and, for its peer,
sb3_<algo>@<env>.json (a rerun of a task replaces them); the page is docs/harder.md and its Chinese
twin. Runs go as in benchmark/run.py (`--workers` at a time, or on Ray). The algorithm pages list
each file's commands from the same TOML (docs/hooks.py), so a documented flag set is a measured one.
Evaluation: each file's own (the deterministic policy, start states of the evaluation's own), over
EVAL_EPISODES episodes for every task; the peer is evaluated the same way by benchmark/peer_sb3.py.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmark"))
import run  # noqa: E402 - benchmark/run.py: the dispatcher, a run's record, number formatting

TASKS_FILE = ROOT / "benchmark" / "harder.toml"
EVAL_EPISODES = 10  # --eval-episodes of every run, ours and the peer's (the Pendulum files default to 50)


def load_tasks(path: Path = TASKS_FILE) -> tuple[list[dict], dict]:
    """([task], {env: threshold}) from the TOML; a task has algo, env, flags and optionally peer, zoo_env."""
    data = tomllib.loads(path.read_text())
    return data.get("task", []), data.get("thresholds", {})


def task_name(task: dict) -> str:
    return f"{task['algo']}@{task['env']}"


def peer_name(task: dict) -> str | None:
    return f"sb3_{task['peer']}@{task['env']}" if task.get("peer") else None


def command(task: dict) -> str:
    """The command line a user runs (the docs show it as is)."""
    return f"python algos/{task['algo']}.py --env-id {task['env']} {task['flags']}".strip()


def budget(task: dict) -> int:
    """The task's --total-steps: the step budget its peer gets too."""
    tokens = shlex.split(task["flags"])
    if "--total-steps" not in tokens:
        raise ValueError(f"{task_name(task)}: its flags must set --total-steps (the peer's budget)")
    return int(tokens[tokens.index("--total-steps") + 1])


def make_jobs(
    tasks: list[dict], thresholds: dict, seeds: list[int], work_dir: str, peers: bool
) -> list[dict]:
    jobs = []
    for task in tasks:
        name, threshold = task_name(task), thresholds.get(task["env"])
        for seed in seeds:
            cmd = [*shlex.split(command(task)), "--seed", str(seed), "--no-progress",
                   "--runs-dir", f"{work_dir}/runs/{name}", "--eval-episodes", str(EVAL_EPISODES)]  # fmt: skip
            jobs.append({"name": name, "seed": seed, "cmd": cmd, "peer": False, "threshold": threshold})
            if peers and task.get("peer"):
                peer_out = f"{work_dir}/peers/{peer_name(task)}_{seed}"
                cmd = ["python", "benchmark/peer_sb3.py", "--algo", task["peer"], "--env-id", task["env"],
                       "--seed", str(seed), "--out", peer_out, "--total-steps", str(budget(task)),
                       "--eval-episodes", str(EVAL_EPISODES)]  # fmt: skip
                if task.get("zoo_env"):
                    cmd += ["--zoo-env", task["zoo_env"]]
                jobs.append({"name": peer_name(task), "seed": seed, "cmd": cmd, "peer": True,
                             "peer_out": peer_out, "threshold": threshold})  # fmt: skip
    return jobs


def summarise(result: dict | None, threshold: float | None) -> dict | None:
    """Median and worst evaluation, seeds that reached the threshold, median steps to it."""
    if result is None:
        return None
    records = run.finished(result)
    evals = [
        r["summary"]["eval_return_mean"] for r in records if r["summary"].get("eval_return_mean") is not None
    ]
    # steps to the threshold now in the TOML, from the stored training episodes (not the value at run time)
    steps = [run.steps_and_seconds_to(r.get("episodes", []), threshold)[0] for r in records]
    reached = [s for s in steps if s is not None]
    # "solved" needs training episodes: BC's student has none (it learns from the teacher's data)
    trained = threshold is not None and any(r.get("episodes") for r in records)
    return {"seeds": [r["seed"] for r in result["records"]], "finished": len(records),
            "eval_median": run.median(evals), "eval_worst": min(evals) if evals else None,
            "reached": len(reached) if trained else None,
            "steps_to_threshold": run.median(reached),
            "date": result.get("date"), "machine": result.get("machine")}  # fmt: skip


def read_results(results_dir: Path, task: dict, thresholds: dict) -> tuple[dict | None, dict | None]:
    """(ours, peer) summaries of a task, None where it has not been run."""

    def load(name):
        path = results_dir / f"{name}.json"
        return json.loads(path.read_text()) if name and path.exists() else None

    threshold = thresholds.get(task["env"])
    return summarise(load(task_name(task)), threshold), summarise(load(peer_name(task)), threshold)


WORDS = {
    "en": {"title": "# Harder environments",
           "intro": ["Generated by `benchmark/harder.py` from `benchmark/harder.toml` and "
                     "`benchmark/results/harder/`; do not edit by hand.",
                     "Each deep file on environments of its kind besides its default, with the flags to start "
                     "from (the file itself is unchanged). Eval: the deterministic policy over {episodes} episodes "
                     "(`--eval-episodes {episodes}`, ours and the peer's) on start states of the evaluation's own, "
                     "median (worst) over the seeds. Solved: seeds whose mean of the last 10 training episodes "
                     "reached the threshold ({}), with the median steps to it. The peer is Stable-Baselines3 "
                     "with rl-zoo3's tuned settings for that task (SB3's defaults where the zoo tunes none, "
                     "marked), given the same step budget and evaluated the same way, one torch thread as "
                     "ours. The zoo tuned those settings for its own budget, "
                     "often 10^6 steps; at ours they may not have reached what they were tuned for."],
           "header": ["file", "env", "flags", "eval, median (worst)", "solved, steps", "SB3 peer", "peer eval",
                      "peer solved, steps"],
           "not_run": "not run yet", "defaults": "{} (SB3 defaults)", "made": "Measured {}.",
           "rerun": "Rerun every row: `python benchmark/harder.py --seeds {}`; one row: "
                    "`python benchmark/harder.py --tasks <file>@<env>`.",
           "page": ["### Other environments", "",
                    "Flags to start from on other environments (from `benchmark/harder.toml`; the "
                    "[harder environments](../harder.md) page has every file's rows):"],
           "row": "{}: eval {} over {} seeds ({episodes} evaluation episodes each){}{}.", "failed": "; {} failed", "not_run_line": "{}: not run yet (`{}`).", "solved": "; solved on {} of {} (median {} steps)",
           "peer": "; SB3 {} at the same budget: {}"},
    "zh": {"title": "# 更难的环境",
           "intro": ["由 `benchmark/harder.py` 根据 `benchmark/harder.toml` 和 `benchmark/results/harder/` 生成，"
                     "请勿手工编辑。",
                     "每个深度强化学习文件在默认环境之外的同类环境上运行，给出起步用的参数（文件本身不改）。"
                     "评估：确定性策略在评估专用的初始状态上跑 {episodes} 个回合（我们和对照都用 `--eval-episodes {episodes}`），取各种子的中位数（最差值）。"
                     "解决：最近 10 个训练回合的平均回报达到阈值（{}）的种子数，以及到达阈值的步数中位数。"
                     "对照是使用 rl-zoo3 为该任务调好的超参数的 Stable-Baselines3（zoo 没有调过的任务用 SB3 "
                     "默认值，并注明），给相同的步数预算、用同样方式评估，与我们一样只用 1 个 torch 线程。"
                     "zoo 的这些超参数是为它自己的预算（常为 10^6 步）调的；在我们的预算下，它们未必达到调参时的水平。"],
           "header": ["文件", "环境", "参数", "评估：中位数（最差）", "解决，步数", "SB3 对照", "对照评估",
                      "对照解决，步数"],
           "not_run": "尚未运行", "defaults": "{}（SB3 默认值）", "made": "测量于 {}。",
           "rerun": "重跑所有行：`python benchmark/harder.py --seeds {}`；重跑一行："
                    "`python benchmark/harder.py --tasks <文件>@<环境>`。",
           "page": ["### 其他环境", "",
                    "在其他环境上起步用的参数（来自 `benchmark/harder.toml`；[更难的环境](../harder.md)"
                    "页面列出所有文件的结果）："],
           "row": "{}：评估 {}，共 {} 个种子（每个 {episodes} 个评估回合）{}{}。", "failed": "；{} 个失败", "not_run_line": "{}：尚未运行（`{}`）。", "solved": "；{}/{} 个种子解决（中位数 {} 步）",
           "peer": "；相同预算下的 SB3 {}：{}"},
}  # fmt: skip


def eval_cell(summary: dict | None, words: dict) -> str:
    if summary is None:
        return words["not_run"]
    failed = len(summary["seeds"]) - summary["finished"]
    cell = f"{run.fmt(summary['eval_median'])} ({run.fmt(summary['eval_worst'])})"
    return cell + (words["failed"].format(failed) if failed else "")


def solved_cell(summary: dict | None, words: dict) -> str:
    if summary is None or summary["reached"] is None:
        return "–"
    steps = run.fmt(summary["steps_to_threshold"], 0) if summary["reached"] else "–"
    return f"{summary['reached']}/{len(summary['seeds'])}, {steps}"


def write_page(results_dir: Path, docs_dir: Path, tasks: list[dict], thresholds: dict) -> None:
    """docs/harder.md and docs/harder.zh.md: one row per task, ours beside the peer."""
    limits = ", ".join(f"{env} {value:g}" for env, value in thresholds.items())
    summaries = [(task, *read_results(results_dir, task, thresholds)) for task in tasks]
    seeds = sorted({s for _, ours, _ in summaries if ours for s in ours["seeds"]}) or [1, 2, 3]
    made = sorted({f"{x['date']}, {x['machine']}" for _, *pair in summaries for x in pair if x})
    for lang, words in WORDS.items():
        lines = [words["title"], "", words["intro"][0], "", words["intro"][1].format(limits, episodes=EVAL_EPISODES), "",
                 words["rerun"].format(" ".join(map(str, seeds))), ""]  # fmt: skip
        if made:
            lines += [words["made"].format("; ".join(made)), ""]
        lines += ["| " + " | ".join(words["header"]) + " |", "|" + " --- |" * len(words["header"])]
        for task, ours, peer in summaries:
            page = f"algorithms/{task['algo']}.md"
            peer_label = "–"
            if task.get("peer"):
                peer_label = f"`{task['peer']}`"
                if task.get("zoo_env") == "none":
                    peer_label = words["defaults"].format(peer_label)
            cells = [f"[`{task['algo']}`]({page})", task["env"], f"`{task['flags']}`", eval_cell(ours, words),
                     solved_cell(ours, words), peer_label, eval_cell(peer, words) if task.get("peer") else "–",
                     solved_cell(peer, words) if task.get("peer") else "–"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        suffix = ".zh.md" if lang == "zh" else ".md"
        (docs_dir / f"harder{suffix}").write_text("\n".join(lines).rstrip() + "\n")


def page_block(stem: str, lang: str, results_dir: Path | None = None) -> str:
    """The algorithm page's part: this file's commands on other environments and what they measured
    (docs/hooks.py appends it to the `{{ results() }}` block); empty for a file with no task."""
    tasks, thresholds = load_tasks()
    mine = [t for t in tasks if t["algo"] == stem]
    if not mine:
        return ""
    words = WORDS[lang]
    results_dir = results_dir or ROOT / "benchmark" / "results" / "harder"
    lines = [*words["page"], ""]
    for task in mine:
        ours, peer = read_results(results_dir, task, thresholds)
        lines += [f"    {command(task)}", ""]
        if ours is None:
            rerun = f"python benchmark/harder.py --tasks {task_name(task)}"
            lines += [words["not_run_line"].format(task["env"], rerun), ""]
            continue
        solved = ""
        if ours["reached"] is not None:
            solved = words["solved"].format(ours["reached"], len(ours["seeds"]),
                                            run.fmt(ours["steps_to_threshold"], 0))  # fmt: skip
        versus = words["peer"].format(task["peer"].upper(), eval_cell(peer, words)) if peer else ""
        lines += [
            words["row"].format(
                task["env"], eval_cell(ours, words), ours["finished"], solved, versus, episodes=EVAL_EPISODES
            ),
            "",
        ]
    return "\n".join(lines).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=None, help="<file>@<env> (default: every task)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--no-peers", dest="peers", action="store_false", help="skip Stable-Baselines3 peers")
    who.add_argument("--peers-only", action="store_true", help="run only the peers of the chosen tasks")
    parser.add_argument("--report-only", action="store_true", help="rebuild the page from saved results")
    run.add_dispatch_args(parser)
    cli = parser.parse_args()
    tasks, thresholds = load_tasks()
    if cli.tasks:
        unknown = set(cli.tasks) - {task_name(t) for t in tasks}
        if unknown:
            parser.error(f"no such task in {TASKS_FILE.name}: {', '.join(sorted(unknown))}")
        chosen = [t for t in tasks if task_name(t) in cli.tasks]
    else:
        chosen = tasks
    results_dir = ROOT / "benchmark" / "results" / "harder"
    if not cli.report_only:
        jobs = make_jobs(chosen, thresholds, cli.seeds, "benchmark/out/harder", cli.peers)
        if cli.peers_only:
            jobs = [job for job in jobs if job["peer"]]
        dispatcher = run.make_dispatcher(cli)
        machine = dispatcher.describe()
        print(f"{len(jobs)} runs on {machine}", file=sys.stderr)
        invocation = run.scrub(shlex.join(["python", "benchmark/harder.py", *sys.argv[1:]]))
        try:
            dispatcher.run(jobs, run.saving_progress(jobs, results_dir, invocation, machine))
        finally:
            dispatcher.close()
    write_page(results_dir, ROOT / "docs", tasks, thresholds)


if __name__ == "__main__":
    main()
