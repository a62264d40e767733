"""Render the docs pages to plain Markdown that a repository host shows as it is: docs-md/.

The site (mkdocs) fills a page's directives (`{{ code("update") }}`, `{{ diff("parent") }}`, ...)
at build time; a repository host shows the source page, directives and all. This script writes
every page of docs/ with its directives filled by the same functions (docs/hooks.py) and its
site-only syntax turned into what GitHub and GitLab render:

- `\\( x \\)` -> $`x`$ and `\\[ x \\]` -> a ```math block (both hosts render these);
- `??? note "title"` and `!!! note "title"` (admonitions) -> <details> and a quote;
- a code block's `title="..."` -> an italic line above the block;
- links to other pages -> the rendered page (a Chinese page links to Chinese twins where they
  exist), links to figures -> docs/figures/, `{{ source() }}` -> a link to the file in algos/;
- `index.md` -> `README.md`, so the host shows it when the folder is opened.

Run it after changing docs/ or algos/; tests/test_docs.py fails while docs-md/ is out of date:

    python docs/render_markdown.py
"""

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hooks  # noqa: E402  (docs/hooks.py: the site's own directive functions)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OUT = ROOT / "docs-md"
SKIP = ("javascripts", "stylesheets", "figures")  # folders of assets, no pages
HEADER = (
    "<!-- Generated from {src} by docs/render_markdown.py, for reading on a repository host. "
    "Edit {src}, then run `python docs/render_markdown.py`. -->\n\n"
)
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
ADMONITION = re.compile(r'^(\s*)(!!!|\?\?\?\+?)\s+([\w-]+)(?:\s+"([^"]*)")?\s*$')
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1", re.S)
SOURCE = re.compile(r"\{\{\s*source\(\s*\)\s*\}\}")


def pages() -> list[Path]:
    """Every Markdown page of the site, English and Chinese."""
    return sorted(
        p for p in DOCS.rglob("*.md") if not any(part in SKIP for part in p.relative_to(DOCS).parts)
    )


def out_path(src: Path) -> Path:
    """docs/algorithms/x.zh.md -> docs-md/algorithms/x.zh.md; docs/index.md -> docs-md/README.md."""
    rel = src.relative_to(DOCS)
    if rel.name.split(".")[0] == "index" and rel.parent == Path("."):
        rel = rel.with_name(rel.name.replace("index", "README", 1))
    return OUT / rel


def is_zh(path: Path) -> bool:
    return path.name.endswith(".zh.md")


def convert_math(text: str) -> str:
    """TeX delimiters of the site -> the host's: ```math blocks and $`inline`$; code spans untouched."""
    spans = []

    def hide(match):
        spans.append(match.group(0))
        return f"\x00{len(spans) - 1}\x00"

    text = INLINE_CODE.sub(hide, text)
    text = re.sub(
        r"[ \t]*\\\[(.+?)\\\]",
        lambda m: (
            "\n```math\n" + "\n".join(line.strip() for line in m.group(1).strip().splitlines()) + "\n```\n"
        ),
        text,
        flags=re.S,
    )
    text = re.sub(r"\\\((.+?)\\\)", lambda m: "$`" + " ".join(m.group(1).split()) + "`$", text, flags=re.S)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)


def convert_link(target: str, src: Path, dst: Path) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
        return target  # a URL, an anchor on the same page, or absolute
    path, _, anchor = target.partition("#")
    resolved = (src.parent / path).resolve()
    if path.endswith(".md") and resolved.is_relative_to(DOCS):
        if is_zh(src) and not resolved.name.endswith(".zh.md"):
            twin = resolved.with_name(resolved.name[: -len(".md")] + ".zh.md")
            resolved = twin if twin.exists() else resolved
        new = out_path(resolved)
    else:
        new = resolved  # a figure or another file: link to it where it is
    rel = os.path.relpath(new, dst.parent).replace(os.sep, "/")
    return rel + (f"#{anchor}" if anchor else "")


def convert_block(lines: list[str], src: Path, dst: Path) -> list[str]:
    """Convert one run of lines: fences are copied (titles moved out), prose is converted."""
    out: list[str] = []
    prose: list[str] = []

    def flush():
        if prose:
            text = convert_math("\n".join(prose))
            text = LINK.sub(lambda m: m.group(1) + convert_link(m.group(2), src, dst) + m.group(3), text)
            out.extend(text.split("\n"))
            prose.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        admonition = ADMONITION.match(line)
        if fence:
            flush()
            indent, marks, info = fence.groups()
            title = re.search(r'title="([^"]*)"', info)
            info = re.sub(r'\s*title="[^"]*"', "", info)
            if title:
                out += [f"{indent}*{title.group(1)}*", ""]
            out.append(f"{indent}{marks}{info.strip()}")
            i += 1
            while i < len(lines) and not re.match(
                rf"^\s*{re.escape(marks[0])}{{{len(marks)},}}\s*$", lines[i]
            ):
                out.append(lines[i])
                i += 1
            if i < len(lines):
                out.append(lines[i])
            i += 1
        elif admonition:
            flush()
            indent, kind, name, title = admonition.groups()
            title = title if title is not None else name.capitalize()
            body, i = [], i + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(indent + "    ")):
                body.append(lines[i][len(indent) + 4 :] if lines[i].strip() else "")
                i += 1
            while body and not body[-1]:
                body.pop()
            inner = convert_block(body, src, dst)
            if kind.startswith("???"):
                summary = convert_math(title).replace("`", "")
                out += [f"{indent}<details><summary>{summary}</summary>", ""]
                out += [f"{indent}{x}" if x else "" for x in inner]
                out += ["", f"{indent}</details>", ""]
            else:
                out += [f"{indent}> **{convert_math(title)}**", f"{indent}>"]
                out += [f"{indent}> {x}".rstrip() for x in inner]
                out.append("")
        else:
            prose.append(line)
            i += 1
    flush()
    return out


def render(src: Path) -> str:
    dst = out_path(src)
    stem = hooks.page_stem(src.name)
    text = src.read_text()
    link = convert_link(f"../algos/{stem}.py", DOCS / "x.md", dst)  # docs/x.md: ../algos is ROOT/algos
    whole = "完整文件：" if is_zh(src) else "The whole file: "
    text = SOURCE.sub(f"{whole}[`algos/{stem}.py`]({link}).", text)
    if is_zh(src) and src.parent.name == "algorithms":
        text = hooks.section_anchors(text, html=True)  # the English anchors, as on the site
    text = hooks.expand_directives(text, stem, str(src.relative_to(ROOT)))
    body = "\n".join(convert_block(text.split("\n"), src, dst))
    body = re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"
    return HEADER.format(src=src.relative_to(ROOT).as_posix()) + body


def render_all() -> tuple[dict[Path, str], dict[Path, str]]:
    """({output path: text}, {source page: error}) for every page of docs/."""
    rendered, errors = {}, {}
    for src in pages():
        try:
            rendered[out_path(src)] = render(src)
        except ValueError as error:  # a directive names what the source does not have
            errors[src] = str(error)
    return rendered, errors


def main() -> int:
    rendered, errors = render_all()
    keep = set(rendered) | {out_path(src) for src in errors}
    for path in OUT.rglob("*.md") if OUT.exists() else []:
        if path not in keep:
            path.unlink()
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    print(f"{len(rendered)} pages in {OUT.relative_to(ROOT)}/")
    for src, error in errors.items():
        print(f"not rendered, {src.relative_to(ROOT)}: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
