"""Sweep any algos/ file's Args fields over seeds; report the median of one summary figure per point.

    python benchmark/sweep.py cliff_q_learning --param alpha=0.1,0.5 epsilon=0.05,0.2 --seeds 1 2
    python benchmark/sweep.py ppo_cartpole --method random --samples 12 \\
        --param learning-rate=loguniform:1e-4:1e-2 update-epochs=int:2:10 --figure seconds_to_threshold
    python benchmark/sweep.py ppo_cartpole --method optuna --samples 20 --param ... --ray-address auto

A parameter is `field=v1,v2,...` (values: the grid's axis, or a choice for random and search
methods) or `field=uniform:LO:HI`, `field=loguniform:LO:HI`, `field=int:LO:HI` (both ends
included). `--method grid` runs every combination; `random` draws `--samples` points (the same
ones again for the same `--sample-seed`); any other method is a Ray Tune search algorithm
(`optuna`, `hyperopt`, `bayesopt`, `nevergrad`, ... whichever is installed), asked for one point at
a time and told each point's figure. Every point runs once per seed; the figure is a key of the
summary (`eval_return_mean`, `regret`, `steps_to_target`, ...) or `steps_to_threshold` /
`seconds_to_threshold` (mean of the last 10 training episodes reaching `--threshold`, by default
CartPole-v1 475, Pendulum-v1 -200). Runs go where benchmark/run.py sends them: a local thread pool,
or Ray tasks with `--ray` / `--ray-address`.

Everything lands in `--out` (default `benchmark/out/sweeps/<file>`): runs/ (each run's directory,
on this machine whichever machine ran it), results.jsonl (one line per finished run, keyed by
point and seed), sweep.md (the table), sweep.png (the figure against each swept field). Running
the same command again resumes: runs already in results.jsonl are not run again, except the ones
that failed or were stopped (`--keep-failed` keeps those too). A failed or stopped run is reported
with its error line and does not stop the others. The last stdout line is a JSON summary with the
best point and the command that reruns it.
"""

import argparse
import ast
import itertools
import json
import math
import random
import shlex
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (benchmark/run.py: the dispatcher, the records, the thresholds)
from run import ROOT, THRESHOLDS, collect, repo_path, steps_and_seconds_to  # noqa: E402

DERIVED = ("steps_to_threshold", "seconds_to_threshold")
LOWER_IS_BETTER = ("steps_to", "seconds", "regret", "_ms_")


def fail(message: str):
    raise SystemExit(f"error: {message}")


# ---------------------------------------------------------------- the space
def args_fields(stem: str) -> dict[str, str]:
    """{field: annotation} of the file's Args dataclass, read from the source (nothing imported)."""
    path = ROOT / "algos" / f"{stem}.py"
    if not path.exists():
        fail(f"no algos/{stem}.py")
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Args":
            return {
                item.target.id: ast.unparse(item.annotation)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    fail(f"algos/{stem}.py has no Args dataclass")


def cast(text: str, annotation: str):
    kind = annotation.removeprefix("Optional[").rstrip("]")
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            fail(f"a bool field takes true or false, got {text!r}")
        return text.lower() == "true"
    try:
        return {"int": int, "float": float}.get(kind, str)(text)
    except ValueError:
        fail(f"{text!r} is not a {kind}")


def parse_param(spec: str, fields: dict[str, str]) -> tuple[str, dict]:
    """'alpha=0.1,0.5' -> ('alpha', {'values': [0.1, 0.5]}); 'lr=loguniform:1e-4:1e-2' -> a range."""
    if "=" not in spec:
        fail(f"--param {spec!r}: write field=v1,v2 or field=uniform:LO:HI")
    name, body = spec.split("=", 1)
    field = name.lstrip("-").replace("-", "_")
    if field not in fields:
        fail(f"--param {name!r}: Args has no field {field!r} (fields: {', '.join(fields)})")
    if field in ("seed", "runs_dir"):
        fail(f"--param {name!r}: the sweep sets {field} itself (use --seeds)")
    kind, _, bounds = body.partition(":")
    if kind in ("uniform", "loguniform", "int") and bounds.count(":") == 1:
        lo, hi = (float(b) for b in bounds.split(":"))
        if kind == "int":
            lo, hi = int(lo), int(hi)
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            fail(f"--param {spec!r}: needs LO < HI (and LO > 0 for loguniform)")
        return field, {"range": kind, "low": lo, "high": hi}
    return field, {"values": [cast(v, fields[field]) for v in body.split(",") if v != ""]}


def flags(point: dict) -> list[str]:
    out = []
    for field, value in point.items():
        flag = field.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            out += [f"--{flag}", str(value)]
    return out


def round_sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def draw(space: dict, rng: random.Random) -> dict:
    point = {}
    for field, spec in space.items():
        if "values" in spec:
            point[field] = rng.choice(spec["values"])
        elif spec["range"] == "int":
            point[field] = rng.randint(spec["low"], spec["high"])
        elif spec["range"] == "uniform":
            point[field] = round_sig(rng.uniform(spec["low"], spec["high"]))
        else:
            point[field] = round_sig(math.exp(rng.uniform(math.log(spec["low"]), math.log(spec["high"]))))
    return point


def tune_space(space: dict) -> dict:
    from ray import tune

    out = {}
    for field, spec in space.items():
        if "values" in spec:
            out[field] = tune.choice(spec["values"])
        elif spec["range"] == "int":
            out[field] = tune.randint(spec["low"], spec["high"] + 1)  # tune's upper end is excluded
        else:
            out[field] = getattr(tune, spec["range"])(spec["low"], spec["high"])
    return out


def make_searcher(method: str, space: dict, mode: str, seed: int):
    try:
        from ray.tune.search import create_searcher
    except ImportError:
        fail(f"--method {method} needs Ray Tune: pip install -r benchmark/requirements.txt")
    try:
        try:
            searcher = create_searcher(method, seed=seed)
        except TypeError:  # not every search algorithm takes a seed
            searcher = create_searcher(method)
    except (ImportError, AssertionError, ValueError) as error:
        fail(f"--method {method}: {str(error).strip().splitlines()[0]}")
    searcher.set_search_properties("figure", mode, tune_space(space))
    return searcher


# ---------------------------------------------------------------- records and figures
class Sweep:
    def __init__(self, cli):
        self.cli = cli
        self.out = Path(cli.out).resolve()
        self.runs_dir = repo_path(self.out / "runs")
        self.results = self.out / "results.jsonl"
        self.lines: dict[tuple[str, int], dict] = {}  # (point key, seed) -> its latest line
        if self.results.exists():
            for text in self.results.read_text().splitlines():
                try:
                    line = json.loads(text)
                except json.JSONDecodeError:  # a line cut short when the sweep was killed
                    continue
                self.lines[(line["key"], line["seed"])] = line

    def key(self, point: dict) -> str:
        fixed = shlex.split(self.cli.fixed)
        return json.dumps({"file": self.cli.file, "fixed": fixed, "point": point}, sort_keys=True)

    def done(self, point: dict, seed: int) -> bool:
        line = self.lines.get((self.key(point), seed))
        return bool(line) and ("error" not in line["record"] or self.cli.keep_failed)

    def job(self, point: dict, seed: int) -> dict:
        cmd = ["python", f"algos/{self.cli.file}.py", *shlex.split(self.cli.fixed), *flags(point),
               "--seed", str(seed), "--no-progress", "--runs-dir", self.runs_dir]  # fmt: skip
        job = {"name": self.cli.file, "seed": seed, "cmd": cmd, "peer": False, "cuda": self.cli.cuda}
        return {**job, "point": point}

    def record(self, job: dict, record: dict) -> None:
        line = {"key": self.key(job["point"]), "point": job["point"], "seed": job["seed"], "record": record}
        self.lines[(line["key"], line["seed"])] = line
        with self.results.open("a") as f:
            f.write(json.dumps(line) + "\n")
        figure = self.figure_of(record)
        status = record.get("error") or f"{self.cli.figure} {run.fmt(figure, 3)}"
        print(f"  {json.dumps(job['point'])} seed {job['seed']}: {status}", file=sys.stderr, flush=True)

    def figure_of(self, record: dict):
        if "summary" not in record or "error" in record:
            return None
        if self.cli.figure in DERIVED:
            env_id = record["summary"].get("env_id")
            threshold = self.cli.threshold if self.cli.threshold is not None else THRESHOLDS.get(env_id)
            if threshold is None:
                fail(f"--figure {self.cli.figure}: no threshold for {env_id}; give --threshold")
            steps, seconds = steps_and_seconds_to(record.get("episodes") or [], threshold)
            return steps if self.cli.figure == "steps_to_threshold" else seconds
        if self.cli.figure not in record["summary"]:
            keys = ", ".join(k for k, v in record["summary"].items() if isinstance(v, (int, float)))
            fail(
                f"--figure {self.cli.figure}: not in the summary (numbers there: {keys}; or {', '.join(DERIVED)})"
            )
        return record["summary"][self.cli.figure]

    def point_row(self, point: dict) -> dict:
        lines = [self.lines.get((self.key(point), seed)) for seed in self.cli.seeds]
        records = [line["record"] for line in lines if line]
        values = [self.figure_of(r) for r in records]
        values = [v for v in values if v is not None]
        return {"point": point, "median": statistics.median(values) if values else None, "values": values,
                "valid": len(values), "runs": len(records),
                "errors": [f"seed {r['seed']}: {r['error']}" for r in records if "error" in r]}  # fmt: skip

    def score(self, row: dict) -> tuple:
        """Best first: more seeds with a figure (reached the threshold, finished), then the median."""
        if row["median"] is None:
            return (-row["valid"], math.inf)
        return (-row["valid"], row["median"] if self.cli.mode == "min" else -row["median"])

    def command(self, point: dict) -> str:
        argv = ["python", f"algos/{self.cli.file}.py", *shlex.split(self.cli.fixed), *flags(point)]
        return shlex.join([*argv, "--seed", str(self.cli.seeds[0])])


# ---------------------------------------------------------------- running
def run_points(sweep: Sweep, points: list[dict], dispatcher) -> None:
    jobs = [sweep.job(p, s) for p in points for s in sweep.cli.seeds if not sweep.done(p, s)]
    skipped = len(points) * len(sweep.cli.seeds) - len(jobs)
    print(f"{len(jobs)} to run, {skipped} already in {repo_path(sweep.results)}", file=sys.stderr)
    dispatcher.run(jobs, sweep.record)


def tell(searcher, trial: str, value) -> None:
    """A point's median figure; a point none of whose seeds has one counts as a failed trial."""
    searcher.on_trial_complete(trial, None if value is None else {"figure": value}, error=value is None)


def run_search(sweep: Sweep, dispatcher) -> list[dict]:
    """Ask the search algorithm for points until --samples of them have run, a few at a time."""
    cli = sweep.cli
    searcher = make_searcher(cli.method, cli.space, cli.mode, cli.sample_seed)
    known = [line["point"] for line in sweep.lines.values() if line["key"] == sweep.key(line["point"])]
    points = list({json.dumps(p, sort_keys=True): p for p in known}.values())
    finished = [p for p in points if all(sweep.done(p, s) for s in cli.seeds)]
    for point in finished:  # a resumed search starts from what it already knows
        row = sweep.point_row(point)
        try:
            searcher.add_evaluated_point(point, row["median"], error=row["median"] is None)
        except NotImplementedError:  # this search algorithm cannot be told; it starts afresh
            break
        except Exception as error:  # noqa: BLE001 - e.g. a point outside a narrowed space
            print(f"{cli.method} was not told of {json.dumps(point)}: {error}", file=sys.stderr)
    evaluated = [p for p in finished if set(p) == set(cli.space)]
    concurrent = max(1, dispatcher.capacity() // len(cli.seeds))
    in_flight: dict = {}  # future -> (trial id, point, job)
    pending: dict[str, int] = {}  # trial id -> runs still going
    asked, trials, repeats = len(evaluated), 0, 0
    seen = {json.dumps(p, sort_keys=True) for p in evaluated}
    print(f"{cli.method}: {cli.samples} points ({asked} from {repo_path(sweep.results)}), "
          f"{concurrent} at a time", file=sys.stderr)  # fmt: skip
    while asked < cli.samples or in_flight:
        while asked < cli.samples and len(pending) < concurrent and repeats < 100:
            trial, trials = f"trial_{trials}", trials + 1
            suggestion = searcher.suggest(trial)
            if suggestion is None or suggestion == "FINISHED":
                cli.samples = asked
                break
            point = {k: v.item() if hasattr(v, "item") else v for k, v in suggestion.items()}  # numpy scalars
            point = {k: round_sig(v) if isinstance(v, float) else v for k, v in point.items()}
            jobs = [sweep.job(point, s) for s in cli.seeds if not sweep.done(point, s)]
            if json.dumps(point, sort_keys=True) in seen:  # a point it already had: does not count
                repeats += 1
                tell(searcher, trial, None if jobs else sweep.point_row(point)["median"])
                continue
            seen.add(json.dumps(point, sort_keys=True))
            asked += 1
            evaluated.append(point)
            pending[trial] = len(jobs)
            for job in jobs:
                in_flight[dispatcher.submit(job)] = (trial, point, job)
            if not jobs:  # every seed of it is in results.jsonl already
                del pending[trial]
                tell(searcher, trial, sweep.point_row(point)["median"])
        if not in_flight:
            break
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            trial, point, job = in_flight.pop(future)
            sweep.record(job, collect(job, future))
            pending[trial] -= 1
            if pending[trial] == 0:
                del pending[trial]
                tell(searcher, trial, sweep.point_row(point)["median"])
    return evaluated


# ---------------------------------------------------------------- report
def plot(sweep: Sweep, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = list(sweep.cli.space)
    fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 3.4), squeeze=False)
    for axis, field in zip(axes[0], fields):
        spec = sweep.cli.space[field]
        categories = [
            v for v in spec.get("values", []) if not isinstance(v, (int, float)) or isinstance(v, bool)
        ]

        def x(value, categories=categories):
            return categories.index(value) if categories else value

        for row in rows:
            xs = x(row["point"][field])
            axis.scatter([xs] * len(row["values"]), row["values"], s=12, color="gray", alpha=0.6)
            if row["median"] is not None:
                axis.scatter([xs], [row["median"]], s=40, color="C0")
        if categories:
            axis.set_xticks(range(len(categories)), [str(c) for c in categories])
        elif spec.get("range") == "loguniform" or (
            all(isinstance(v, (int, float)) and v > 0 for v in spec.get("values", [0]))
            and max(spec["values"]) / min(spec["values"]) >= 20
        ):
            axis.set_xscale("log")
        axis.set_xlabel(field)
        axis.set_ylabel(sweep.cli.figure)
    fig.suptitle(f"{sweep.cli.file}: {sweep.cli.figure}, {len(sweep.cli.seeds)} seed(s) per point "
                 "(gray: each seed, blue: median)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(sweep: Sweep, points: list[dict]) -> dict:
    cli = sweep.cli
    points = list({json.dumps(p, sort_keys=True): p for p in points}.values())  # a point asked twice
    rows = sorted((sweep.point_row(p) for p in points), key=sweep.score)
    fields = list(cli.space)
    best = rows[0] if rows and rows[0]["median"] is not None else None
    lines = [f"# Sweep of {cli.file}", "", f"Made by `{cli.invocation}` on {time.strftime('%Y-%m-%d')}.",
             f"Figure: median over seeds of `{cli.figure}` ({'lower' if cli.mode == 'min' else 'higher'} is "
             "better), over the seeds that have one; points with more such seeds rank first.", "",
             "| " + " | ".join([*fields, f"{cli.figure} median", "seeds with a figure", "values"]) + " |",
             "|" + " --- |" * (len(fields) + 3)]  # fmt: skip
    for row in rows:
        values = ", ".join(run.fmt(v, 3) for v in row["values"])
        cells = [str(row["point"][f]) for f in fields]
        lines.append("| " + " | ".join([*cells, run.fmt(row["median"], 3), f"{row['valid']}/{len(cli.seeds)}",
                                        values]) + " |")  # fmt: skip
    failures = [f"- {json.dumps(row['point'])} {e}" for row in rows for e in row["errors"]]
    if failures:
        lines += ["", "Runs that failed or were stopped (run the sweep again to retry them):", "", *failures]
    if best:
        lines += [
            "",
            f"Best: {json.dumps(best['point'])}, rerun with",
            "",
            "```bash",
            sweep.command(best["point"]),
            "```",
        ]
    if rows:
        plot(sweep, rows, sweep.out / "sweep.png")
        lines += ["", "![the figure against each swept field](sweep.png)"]
    (sweep.out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]), file=sys.stderr)
    return {"file": cli.file, "figure": cli.figure, "mode": cli.mode, "points": len(rows),
            "runs": sum(r["runs"] for r in rows), "failed": len(failures),
            "best": best and best["point"], "best_median": best and best["median"],
            "best_seeds": best and f"{best['valid']}/{len(cli.seeds)}",
            "command": best and sweep.command(best["point"]), "report": repo_path(sweep.out / "sweep.md")}  # fmt: skip


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="the algos/ file's stem, e.g. cliff_q_learning")
    parser.add_argument("--param", dest="params", action="extend", nargs="+", default=[], metavar="FIELD=SPEC",
                        help="field=v1,v2,... or field=uniform|loguniform|int:LO:HI")  # fmt: skip
    parser.add_argument(
        "--method", default="grid", help="grid, random, or a Ray Tune search algorithm (optuna, ...)"
    )
    parser.add_argument("--samples", type=int, default=10, help="points to try (random and search methods)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seeds the random draws and the searcher")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument(
        "--figure", default="eval_return_mean", help="summary key, or steps/seconds_to_threshold"
    )
    parser.add_argument(
        "--mode", choices=["min", "max"], default=None, help="default: min for steps, seconds, regret"
    )
    parser.add_argument("--threshold", type=float, default=None, help="for steps/seconds_to_threshold")
    parser.add_argument("--fixed", default="", help="arguments every run gets, e.g. '--total-steps 20000'")
    parser.add_argument("--out", default=None, help="default: benchmark/out/sweeps/<file>")
    parser.add_argument("--keep-failed", action="store_true", help="on resume, do not rerun failed runs")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from results.jsonl")
    run.add_dispatch_args(parser)
    cli = parser.parse_args()
    cli.invocation = run.scrub(shlex.join(["python", "benchmark/sweep.py", *sys.argv[1:]]))
    fields = args_fields(cli.file)
    if not cli.params:
        fail("give at least one --param field=v1,v2")
    cli.space = dict(parse_param(spec, fields) for spec in cli.params)
    if cli.mode is None:
        cli.mode = "min" if any(word in cli.figure for word in LOWER_IS_BETTER) else "max"
    cli.out = cli.out or str(ROOT / "benchmark" / "out" / "sweeps" / cli.file)
    sweep = Sweep(cli)
    if cli.method == "grid":
        if any("values" not in spec for spec in cli.space.values()):
            fail(
                "--method grid takes lists of values (field=v1,v2); ranges need --method random or a searcher"
            )
        points = [
            dict(zip(cli.space, combo))
            for combo in itertools.product(*(s["values"] for s in cli.space.values()))
        ]
    elif cli.method == "random":
        rng = random.Random(cli.sample_seed)
        points = list(
            {
                json.dumps(p, sort_keys=True): p for p in (draw(cli.space, rng) for _ in range(cli.samples))
            }.values()
        )
    else:
        points = None
    sweep.out.mkdir(parents=True, exist_ok=True)
    if not cli.report_only:
        dispatcher = run.make_dispatcher(cli)
        print(f"sweep of {cli.file} on {dispatcher.describe()}", file=sys.stderr)
        try:
            if points is None:
                points = run_search(sweep, dispatcher)
            else:
                run_points(sweep, points, dispatcher)
        finally:
            dispatcher.close()
    elif points is None:  # a search's points are the ones results.jsonl holds
        lines = [ln for ln in sweep.lines.values() if ln["key"] == sweep.key(ln["point"])]
        points = list({ln["key"]: ln["point"] for ln in lines if set(ln["point"]) == set(cli.space)}.values())
    print(json.dumps(report(sweep, points)))


if __name__ == "__main__":
    main()
