"""mkdocs hook: fills the generated parts of the algorithm pages from the source files.

Directives, written in a page's markdown (the page `algorithms/<stem>.md` documents `algos/<stem>.py`):

- `{{ code("name") }}`     the function or class `name` of this page's file, or the marker block
                           `# == SHARED|ALGO|ENV: name ==` when no function has that name
- `{{ code("name", "stem") }}`  the same from another file
- `{{ args_table() }}`     the hyperparameter table, generated from the `Args` field docstrings
- `{{ diff("parent") }}`   the unified diff `algos/<parent>.py` -> this page's file
- `{{ source() }}`         the whole file, folded
- `{{ results() }}`        per-seed results of this file from `benchmark/results/<stem>.json`
                           (written by `benchmark/run.py`), the command that made them and the figure

Everything is read from the source at build time, so no page can go stale. A Chinese twin
`algorithms/<stem>.zh.md` (mkdocs-static-i18n, suffix structure) uses the same directives and gets
the same code, tables and figures.
"""

import ast
import difflib
import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"(?<!`)\{\{\s*(\w+)\((.*?)\)\s*\}\}(?!`)")  # `{{ ... }}` in backticks is left as text


def algo_source(stem: str) -> str:
    path = ROOT / "algos" / f"{stem}.py"
    if not path.exists():
        raise ValueError(f"docs refer to algos/{stem}.py, which does not exist")
    return path.read_text()


def code(stem: str, name: str) -> str:
    source = algo_source(stem)
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            snippet = "\n".join(lines[start - 1 : node.end_lineno])
            return f'```python title="algos/{stem}.py, lines {start}-{node.end_lineno}"\n{snippet}\n```'
    for i, line in enumerate(lines):
        if re.match(rf"\s*# == (SHARED|ALGO|ENV): {re.escape(name)} ==", line):
            end = next(
                (j for j in range(i + 1, len(lines)) if re.match(r"\s*# == (SHARED|ALGO|ENV): ", lines[j])),
                len(lines),
            )
            body = "\n".join(lines[i:end]).rstrip()
            return f'```python title="algos/{stem}.py, lines {i + 1}-{end}"\n{body}\n```'
    raise ValueError(f"algos/{stem}.py has no function, class or marker block named {name!r}")


def args_table(stem: str) -> str:
    tree = ast.parse(algo_source(stem))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    rows = ["| flag | type | default | meaning |", "| --- | --- | --- | --- |"]
    for i, node in enumerate(cls.body):
        if not isinstance(node, ast.AnnAssign):
            continue
        doc = cls.body[i + 1].value.value if i + 1 < len(cls.body) else ""
        default = ast.unparse(node.value) if node.value is not None else "required"
        if node.target.id == "exp_name":
            default = f"`{stem}`"
        else:
            default = f"`{default}`"
        flag = "--" + node.target.id.replace("_", "-")
        kind = ast.unparse(node.annotation)
        meaning = " ".join(str(doc).split()).replace("|", "\\|")
        rows.append(f"| `{flag}` | `{kind}` | {default} | {meaning} |")
    return "\n".join(rows)


def diff(stem: str, parent: str) -> str:
    lines = difflib.unified_diff(
        algo_source(parent).splitlines(),
        algo_source(stem).splitlines(),
        fromfile=f"algos/{parent}.py",
        tofile=f"algos/{stem}.py",
        lineterm="",
        n=2,
    )
    body = "\n".join(lines)
    return (
        f'??? note "diff algos/{parent}.py algos/{stem}.py"\n\n    ```diff\n'
        + "\n".join("    " + line for line in body.splitlines())
        + "\n    ```"
    )


def source(stem: str) -> str:
    body = "\n".join("    " + line for line in algo_source(stem).splitlines())
    return f'??? example "the whole file: algos/{stem}.py"\n\n    ```python\n{body}\n    ```'


def results(stem: str) -> str:
    path = ROOT / "benchmark" / "results" / f"{stem}.json"
    if not path.exists():
        return f"*Not benchmarked yet: `python benchmark/run.py --algos {stem}` fills this section.*"
    data = json.loads(path.read_text())
    records = [  # failed runs carry "error", interrupted ones a null evaluation: neither is a result
        r for r in data["records"] if "summary" in r and r["summary"].get("eval_return_mean") is not None
    ]
    extra = [
        k
        for k in ("regret", "success_rate", "planning_ms_per_action")
        if records and k in records[0]["summary"]
    ]
    head = (
        "| seed | eval return | "
        + "".join(f"{k} | " for k in extra)
        + "steps to thr. | s to thr. | steps/s |"
    )
    rows = [head, "|" + " --- |" * (5 + len(extra))]
    for r in records:
        s = r["summary"]
        cells = [str(r["seed"]), f"{s['eval_return_mean']:.2f}", *(f"{s[k]:.3g}" for k in extra)]
        cells += [
            str(r["steps_to_threshold"] or "–"),
            str(r["seconds_to_threshold"] or "–"),
            f"{s['steps_per_second']:.0f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    evals = sorted(r["summary"]["eval_return_mean"] for r in records)
    text = [
        f"Made by `{data['invocation']}` on {data['date']} ({data['machine']}); each run:",
        "",
        f"    {records[0]['command'] if records else ''}",
        "",
        f"Median eval return {statistics.median(evals):.2f}, worst {evals[0]:.2f}, over {len(evals)} seeds.",
        "",
        *rows,
    ]
    if (ROOT / "docs" / "figures" / f"bench_{stem}.png").exists():
        text += ["", f"![learning curves of {stem}](../figures/bench_{stem}.png)"]
    if (ROOT / "docs" / "figures" / f"{stem}.gif").exists():
        text += ["", f"![{stem} after training](../figures/{stem}.gif)"]
    return "\n".join(text)


def page_stem(src_path: str) -> str:
    """`algorithms/ppo_cartpole.md` and its twin `algorithms/ppo_cartpole.zh.md` -> `ppo_cartpole`."""
    return Path(src_path).name.split(".")[0]


def expand_directives(markdown: str, stem: str, where: str = "") -> str:
    """Replace every `{{ name(...) }}` directive of a page documenting algos/<stem>.py."""

    def expand(match):
        name = match.group(1)
        params = [p.strip().strip("\"'") for p in match.group(2).split(",") if p.strip()]
        if name == "code":
            return code(params[1] if len(params) > 1 else stem, params[0])
        if name == "args_table":
            return args_table(params[0] if params else stem)
        if name == "diff":
            return diff(stem, params[0])
        if name == "results":
            return results(params[0] if params else stem)
        if name == "source":
            return source(params[0] if params else stem)
        raise ValueError(f"{where}: unknown directive {name}")

    return DIRECTIVE.sub(expand, markdown)


def on_page_markdown(markdown, page, config, files):
    return expand_directives(markdown, page_stem(page.file.src_path), page.file.src_path)


def define_env(env):
    """The same directives as macros (the mkdocs-macros interface), for Zensical, which runs no
    mkdocs hooks but emulates mkdocs-macros: see docs/building.md."""

    def stem():  # Zensical's page has .path, the page's path under docs/
        return page_stem(getattr(env.page, "path", None) or env.page.file.src_path)

    env.macro(lambda name, other=None: code(other or stem(), name), "code")
    env.macro(lambda other=None: args_table(other or stem()), "args_table")
    env.macro(lambda parent: diff(stem(), parent), "diff")
    env.macro(lambda other=None: results(other or stem()), "results")
    env.macro(lambda other=None: source(other or stem()), "source")
