"""mkdocs hook: fills the generated parts of the algorithm pages from the source files.

Directives, written in a page's markdown (the page `algorithms/<stem>.md` documents `algos/<stem>.py`):

- `{{ code("name") }}`     the function or class `name` of this page's file, or the marker block
                           `# == SHARED|ALGO|ENV: name ==` when no function has that name
- `{{ code("name", "stem") }}`  the same from another file
- `{{ args_table() }}`     the hyperparameter table, generated from the `Args` field docstrings
- `{{ diff("parent") }}`   the unified diff `algos/<parent>.py` -> this page's file
- `{{ source() }}`         the whole file, folded
- `{{ results() }}`        per-seed results of this file from `benchmark/results/<stem>.json`
                           (written by `benchmark/run.py`): the command once, median and worst, steps
                           and seconds to the threshold, the Stable-Baselines3 peer, the curve; then
                           the file's commands on other environments (`benchmark/harder.toml`) with
                           what `benchmark/harder.py` measured of them
- `{{ sabotages() }}`      the named sabotages of this file's defining parts, from
                           `tests/sabotage/<stem>.toml` (what each breaks, the test that catches it, the change)

Everything is read from the source at build time, so no page can go stale. A Chinese twin
`algorithms/<stem>.zh.md` (mkdocs-static-i18n, suffix structure) uses the same directives and gets
the same code, tables and figures, with the generated headings and sentences in Chinese; its fixed
section headings (`## 实现细节`, ...) take the English page's anchors (`#implementation-details`).
"""

import ast
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}  # as benchmark/run.py: steps and seconds to these
DIRECTIVE = re.compile(r"(?<!`)\{\{\s*(\w+)\((.*?)\)\s*\}\}(?!`)")  # `{{ ... }}` in backticks is left as text


def language(where: str) -> str:
    """The language of a page, which the generated words follow: "zh" for a twin `x.zh.md`, else "en"."""
    return "zh" if str(where).endswith(".zh.md") else "en"


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


def args_table(stem: str, lang: str = "en") -> str:
    tree = ast.parse(algo_source(stem))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    head = (
        "| 参数 | 类型 | 默认值 | 含义（取自 `Args` 的文档字符串） |"
        if lang == "zh"
        else "| flag | type | default | meaning |"
    )
    rows = [head, "| --- | --- | --- | --- |"]
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


def source(stem: str, lang: str = "en") -> str:
    body = "\n".join("    " + line for line in algo_source(stem).splitlines())
    title = f"完整文件：algos/{stem}.py" if lang == "zh" else f"the whole file: algos/{stem}.py"
    return f'??? example "{title}"\n\n    ```python\n{body}\n    ```'


# A file's own summary figures, shown per seed where its summary has them (imitation: the teacher's return
# and the student's agreement with it).
SUMMARY_FIGURES = (
    "regret",
    "success_rate",
    "planning_ms_per_action",
    "expert_return",
    "expert_action_agreement",
)


def results(stem: str, lang: str = "en") -> str:
    zh = lang == "zh"
    path = ROOT / "benchmark" / "results" / f"{stem}.json"
    if not path.exists():
        if zh:
            return (
                f"*尚未进行基准测试：运行 `python benchmark/run.py --algos {stem}` 即可填入本节。*"
                + other_environments(stem, lang)
            )
        return (
            f"*Not benchmarked yet: `python benchmark/run.py --algos {stem}` fills this section.*"
            + other_environments(stem, lang)
        )
    data = json.loads(path.read_text())
    records = [  # failed runs carry "error", interrupted ones a null evaluation: neither is a result
        r for r in data["records"] if "summary" in r and r["summary"].get("eval_return_mean") is not None
    ]
    extra = [k for k in SUMMARY_FIGURES if records and k in records[0]["summary"]]
    env_id = records[0]["summary"].get("env_id") if records else None
    timed = env_id in THRESHOLDS  # steps and seconds to a threshold only where one is defined
    columns = (
        ("种子", "评估回报", "到达阈值的步数", "到达阈值的秒数", "每秒步数")
        if zh
        else ("seed", "eval return", "steps to thr.", "s to thr.", "steps/s")
    )
    head = [*columns[:2], *extra, *(columns[2:4] if timed else ()), columns[4]]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in records:
        s = r["summary"]
        cells = [str(r["seed"]), f"{s['eval_return_mean']:.2f}", *(f"{s[k]:.3g}" for k in extra)]
        if timed:
            cells += [
                str(r["steps_to_threshold"] or "–"),
                f"{r['seconds_to_threshold']:.1f}" if r["seconds_to_threshold"] is not None else "–",
            ]
        cells.append(f"{s['steps_per_second']:.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    evals = sorted(r["summary"]["eval_return_mean"] for r in records)
    seeds = " ".join(str(r["seed"]) for r in data["records"])
    rerun = f"python benchmark/run.py --seeds {seeds} --algos {stem}"
    command = f"python algos/{stem}.py --seed S" + run_options(records[0]["command"] if records else "")
    if zh:
        made = f"{data['date']} 在 {data['machine']} 上由 `{rerun}` 生成，其中每次运行是"
        summary = (
            f"评估回报的中位数 {statistics.median(evals):.2f}，最差 {evals[0]:.2f}，共 {len(evals)} 个种子。"
        )
    else:
        made = f"Made on {data['date']} ({data['machine']}) by `{rerun}`; each of its runs is"
        summary = f"Median eval return {statistics.median(evals):.2f}, worst {evals[0]:.2f}, over {len(evals)} seeds."
    if timed:
        reached = [r for r in records if r.get("steps_to_threshold") is not None]
        if zh:
            summary += f"训练回报（最近 10 个回合的平均）到达阈值 {THRESHOLDS[env_id]:g} 的种子：{len(reached)}/{len(records)}"
        else:
            summary += (
                f" The training return (mean of the last 10 episodes) reached the threshold "
                f"{THRESHOLDS[env_id]:g} on {len(reached)} of {len(records)} seeds"
            )
        if reached:
            steps = statistics.median(r["steps_to_threshold"] for r in reached)
            secs = statistics.median(r["seconds_to_threshold"] for r in reached)
            summary += (
                f"，中位数 {steps:.0f} 步、{secs:.1f} 秒（从进程启动算起）。"
                if zh
                else f", median {steps:.0f} steps and {secs:.1f} s from process start."
            )
        else:
            summary += "。" if zh else "."
    peer = peer_sentence(stem, zh)
    summary += ("" if zh else " ") + peer if peer else ""
    text = [made, "", f"    {command}", "", summary, "", *rows]
    if (ROOT / "docs" / "figures" / f"bench_{stem}.png").exists():
        alt = f"{stem} 的学习曲线" if zh else f"learning curves of {stem}"
        text += ["", f"![{alt}](../figures/bench_{stem}.png)"]
    if (ROOT / "docs" / "figures" / f"{stem}.gif").exists():
        alt = f"训练后的 {stem}" if zh else f"{stem} after training"
        text += ["", f"![{alt}](../figures/{stem}.gif)"]
    return "\n".join(text) + other_environments(stem, lang)


def benchmark_scripts() -> None:
    """Make benchmark/'s scripts importable (harder, run)."""
    if str(ROOT / "benchmark") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmark"))


def other_environments(stem: str, lang: str) -> str:
    """The file's flag sets on other environments and their results (benchmark/harder.py), if it has any."""
    benchmark_scripts()
    import harder

    block = harder.page_block(stem, lang)
    return f"\n\n{block}" if block else ""


def run_options(command: str) -> str:
    """The options of a benchmark run's command that change its numbers (not its seed, output
    folder, progress bar or video), as a user would add them to `python algos/<stem>.py`."""
    tokens, kept = command.split()[1:], []
    while tokens:
        token = tokens.pop(0)
        if token in ("--seed", "--runs-dir"):
            tokens = tokens[1:]
        elif token not in ("--no-progress", "--capture-video"):
            kept.append(token)
    return "".join(f" {t}" for t in kept)


def peer_sentence(stem: str, zh: bool) -> str:
    """The Stable-Baselines3 peer of this file (`benchmark/results/<its peer_name>.json`), if it was run."""
    benchmark_scripts()
    import run

    name = run.peer_name(stem)
    path = ROOT / "benchmark" / "results" / f"{name}.json"
    if name is None or not path.exists():
        return ""
    records = [r for r in json.loads(path.read_text())["records"] if "error" not in r]
    reached = [r for r in records if r.get("steps_to_threshold") is not None]
    if zh:
        text = f"同机运行的 Stable-Baselines3 对照（rl-zoo3 超参数，到达阈值即停止）在 {len(records)} 个种子中有 {len(reached)} 个到达阈值"
    else:
        text = (
            f"The Stable-Baselines3 peer (rl-zoo3 hyperparameters, same machine, stopped at the threshold) "
            f"reached the threshold on {len(reached)} of {len(records)} seeds"
        )
    if reached:
        steps = statistics.median(r["steps_to_threshold"] for r in reached)
        secs = statistics.median(r["seconds_to_threshold"] for r in reached)
        text += (
            f"，中位数 {steps:.0f} 步、{secs:.1f} 秒"
            if zh
            else f", median {steps:.0f} steps and {secs:.1f} s"
        )
    return text + ("（曲线见下图）。" if zh else " (its curve is in the figure).")


def sabotages(stem: str, lang: str = "en") -> str:
    """The named sabotages of tests/sabotage/<stem>.toml: a table (what each breaks, the test that
    catches it) and, folded, each change as a diff of the file."""
    path = ROOT / "tests" / "sabotage" / f"{stem}.toml"
    if not path.exists():
        raise ValueError(f"sabotages(): tests/sabotage/{stem}.toml does not exist")
    items = tomllib.loads(path.read_text())["sabotage"]
    if lang == "zh":
        text = [
            f"每一行是 `tests/sabotage/{stem}.toml` 里的一项有意破坏：`python tests/sabotage.py {stem}` "
            "把它施加到仓库的一份副本上，并检查右栏的快速测试至少有一个失败。"
            "“破坏了什么”一栏原文取自该文件（英文）；改动本身折叠在表格下方。",
            "",
            "| 破坏 | 破坏了什么 | 发现它的测试 |",
        ]
        fold = f"{len(items)} 项破坏对应的代码改动（diff）"
    else:
        text = [
            f"Each row is a named sabotage in `tests/sabotage/{stem}.toml`: `python tests/sabotage.py {stem}` "
            "applies it to a copy of the repository and checks that one of the fast tests beside it fails. "
            "The changes themselves are folded below the table.",
            "",
            "| sabotage | what it breaks | caught by |",
        ]
        fold = f"the {len(items)} sabotages as changes to the code"
    text.append("| --- | --- | --- |")
    for item in items:
        reason = " ".join(str(item["reason"]).split()).replace("|", "\\|")
        tests = ", ".join(f"`{t.split('::')[-1]}`" for t in item["tests"]).replace("|", "\\|")
        text.append(f"| `{item['name']}` | {reason} | {tests} |")
    text += ["", f'??? note "{fold}"', ""]
    for item in items:
        old = str(item["old"]).strip("\n").splitlines()
        new = str(item["new"]).strip("\n").splitlines()
        text += [f"    `{item['name']}`", "", "    ```diff"]
        text += [f"    -{line}" for line in old] + [f"    +{line}" for line in new]
        text += ["    ```", ""]
    return "\n".join(text).rstrip()


# The fixed sections of an algorithm page (docs/conventions.md, section 8). On a Chinese twin each
# of these headings takes the English page's anchor, so that `x.md#implementation-details` leads to
# the same section in both languages, also from an English page the Chinese site shows while its
# twin is still to be written.
SECTION_IDS = {
    "要点速览": "quick-facts",
    "关键公式": "key-equations",
    "伪代码": "pseudocode",
    "实现细节": "implementation-details",
    "去掉关键部分会怎样": "what-breaks-without-its-defining-parts",
    "超参数": "hyperparameters",
    "记录的指标": "logged-metrics",
    "与父文件的 diff": "diff-against-the-parent",
    "结果": "results",
    "参考文献": "references",
}
SECTION_HEADING = re.compile(r"^## (" + "|".join(map(re.escape, SECTION_IDS)) + r")[ \t]*$", re.M)


def section_anchors(markdown: str, html: bool = False) -> str:
    """Give a Chinese page's fixed section headings the English anchors as well as their own
    (`#实现细节`, as a repository host makes it): on the site the heading's id is the English one
    and an empty anchor above it keeps the Chinese one; on a repository host (`html`), which makes
    the Chinese anchor itself, the empty anchor carries the English one."""

    def site(match):
        own = re.sub(r"[^\w\- ]", "", match.group(1)).strip().lower().replace(" ", "-")
        return f'<a id="{own}"></a>\n\n{match.group(0)} {{#{SECTION_IDS[match.group(1)]}}}'

    if html:
        return SECTION_HEADING.sub(
            lambda m: f'<a id="{SECTION_IDS[m.group(1)]}"></a>\n\n{m.group(0)}', markdown
        )
    return SECTION_HEADING.sub(site, markdown)


def page_stem(src_path: str) -> str:
    """`algorithms/ppo_cartpole.md` and its twin `algorithms/ppo_cartpole.zh.md` -> `ppo_cartpole`."""
    return Path(src_path).name.split(".")[0]


def expand_directives(markdown: str, stem: str, where: str = "") -> str:
    """Replace every `{{ name(...) }}` directive of a page documenting algos/<stem>.py; `where`, the
    page's path, names the language of the generated words (`x.zh.md`: Chinese)."""
    lang = language(where)

    def expand(match):
        name = match.group(1)
        params = [p.strip().strip("\"'") for p in match.group(2).split(",") if p.strip()]
        if name == "code":
            return code(params[1] if len(params) > 1 else stem, params[0])
        if name == "args_table":
            return args_table(params[0] if params else stem, lang)
        if name == "diff":
            return diff(stem, params[0])
        if name == "results":
            return results(params[0] if params else stem, lang)
        if name == "sabotages":
            return sabotages(params[0] if params else stem, lang)
        if name == "source":
            return source(params[0] if params else stem, lang)
        raise ValueError(f"{where}: unknown directive {name}")

    return DIRECTIVE.sub(expand, markdown)


def on_page_markdown(markdown, page, config, files):
    where = page.file.src_path
    if language(where) == "zh" and where.startswith("algorithms/"):
        markdown = section_anchors(markdown)
    return expand_directives(markdown, page_stem(where), where)


def define_env(env):
    """The same directives as macros (the mkdocs-macros interface), for Zensical, which runs no
    mkdocs hooks but emulates mkdocs-macros: see docs/building.md."""

    def path():  # Zensical's page has .path, the page's path under docs/
        return getattr(env.page, "path", None) or env.page.file.src_path

    def stem():
        return page_stem(path())

    env.macro(lambda name, other=None: code(other or stem(), name), "code")
    env.macro(lambda other=None: args_table(other or stem(), language(path())), "args_table")
    env.macro(lambda parent: diff(stem(), parent), "diff")
    env.macro(lambda other=None: results(other or stem(), language(path())), "results")
    env.macro(lambda other=None: sabotages(other or stem(), language(path())), "sabotages")
    env.macro(lambda other=None: source(other or stem(), language(path())), "source")
