"""The docs: the site builds with --strict, renders every equation in a browser with the network
off, has a Chinese twin for every page, carries no machine paths, every algorithm page has the
house shape (CONVENTIONS 8) and reads as facts rather than a development log, and docs-md/ (the
pages as a repository host shows them) is in step with docs/ and algos/.

The browser test needs Debian's `chromium` (`apt-get install -y chromium`); it is skipped, with
that reason, where there is none.
"""

import ast
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402
import render_markdown  # noqa: E402

DOCS = ROOT / "docs"
ENGLISH_PAGES = sorted(
    p.relative_to(DOCS).as_posix() for p in render_markdown.pages() if not p.name.endswith(".zh.md")
)
# English pages whose Chinese twin is still to be written (docs/translating.md says how). The
# site shows them in English in the Chinese edition meanwhile. Remove a page from this list when
# its twin lands: the test then fails if the twin goes missing again.
TRANSLATED_ALGOS = {  # besides the bandit_ files
    "cliff_policy_iteration",
    "cliff_value_iteration",
    "frozenlake_policy_iteration",
    "frozenlake_value_iteration",
    "cliff_sarsa",
    "cliff_q_learning",
    "dyna_q",
    "cliff_n_step_sarsa",
    "cliff_expected_sarsa",
    "ddpg_pendulum",
    "sac_pendulum",
    "td3_pendulum",
    "cql_pendulum",
    "sac_discrete_cartpole",
    "gail_cartpole",
    "bc_cartpole",
    "mpc_pendulum",
    "dqn_cartpole",
    "dqn_pendulum",
    "ddqn_pendulum",
    "dueling_dqn_pendulum",
    "reinforce_cartpole",
    "actor_critic_cartpole",
    "ppo_cartpole",
    "ppo_pendulum",
    "trpo_cartpole",
}
TRANSLATION_PENDING = {
    *(
        f"algorithms/{p.stem}.md"
        for p in sorted((ROOT / "algos").glob("*.py"))
        if not p.stem.startswith("bandit_") and p.stem not in TRANSLATED_ALGOS
    ),
}


# -- the site ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site once for this module: (site dir, mkdocs' output)."""
    out_dir = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    return out_dir, out


@pytest.mark.xdist_group("site")  # one worker builds the site once
def test_mkdocs_build_strict(site):
    _, out = site
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.xdist_group("site")  # one worker builds the site once
def test_site_requests_nothing_from_the_network(site):
    """No CDN script, stylesheet or web font: the built pages name only local resources."""
    site_dir, out = site
    assert out.returncode == 0, "the site did not build"
    remote = re.compile(
        r"""<(?:script|img|iframe)\b[^>]*\bsrc=["']?(?:https?:)?//|<link\b[^>]*\bhref=["']?(?:https?:)?//"""
        r"""|@import\s+url\(["']?(?:https?:)?//|fonts\.(?:googleapis|gstatic)\.com"""
    )  # fmt: skip
    found = []
    for path in site_dir.rglob("*"):
        if path.suffix in {".html", ".css"}:
            for match in remote.finditer(path.read_text(errors="replace")):
                found.append(f"{path.relative_to(site_dir)}: {match.group(0)[:100]}")
    assert not found, "the site loads from the network:\n" + "\n".join(found[:20])


@pytest.mark.xdist_group("site")  # one worker builds the site once
def test_language_switch_links_every_page_to_its_twin(site):
    site_dir, out = site
    assert out.returncode == 0, "the site did not build"
    for page in ENGLISH_PAGES:
        html = page[: -len(".md")] + ".html"
        for built, other in (
            (site_dir / html, site_dir / "zh" / html),
            (site_dir / "zh" / html, site_dir / html),
        ):
            assert built.exists(), f"{built.relative_to(site_dir)} was not built"
            links = re.findall(r'<a href="([^"]+)" hreflang="(en|zh)"', built.read_text())
            assert {lang for _, lang in links} == {"en", "zh"}, (
                f"{built.relative_to(site_dir)}: no language switch"
            )
            targets = {(built.parent / href).resolve() for href, _ in links}
            assert other.resolve() in targets, f"{built.relative_to(site_dir)}: the switch misses {other}"


# -- the site in a browser, offline --------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-extensions", "--mute-audio",
    # the network off: no host name resolves and any proxy connection is refused
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--proxy-server=127.0.0.1:9",
    "--remote-debugging-pipe", "about:blank",
]  # fmt: skip
PAGE_REPORT = """(async () => {
  const deadline = Date.now() + 20000;
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < deadline)
    await new Promise(r => setTimeout(r, 50));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const skip = "pre, code, script, style, textarea, mjx-container, .md-search, .md-header__topic";
  const walker = document.createTreeWalker(document.querySelector("article") || document.body,
    NodeFilter.SHOW_TEXT, {acceptNode: n => n.parentElement.closest(skip) ?
      NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  let text = ""; while (walker.nextNode()) text += walker.currentNode.nodeValue + " ";
  return {
    mathjax: !!(window.MathJax && MathJax.version),
    text,
    math: document.querySelectorAll(".arithmatex").length,
    unrendered: [...document.querySelectorAll(".arithmatex")].filter(e => !e.querySelector("mjx-container"))
      .map(e => e.textContent.slice(0, 80)),
    errors: [...document.querySelectorAll("[data-mjx-error], mjx-merror")]
      .map(e => e.getAttribute("data-mjx-error") || e.textContent.slice(0, 80)),
    broken_images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    code_blocks: document.querySelectorAll("article pre code").length,
  };
})()"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (one browser for all pages)."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = (self._high(fd) for fd in os.pipe())
        self._from_chrome, from_chrome_w = (self._high(fd) for fd in os.pipe())

        def fds():  # the protocol pipe is fd 3 (commands in) and fd 4 (replies out)
            for fd, target in ((to_chrome_r, 3), (from_chrome_w, 4)):
                os.dup2(fd, target)
                os.set_inheritable(target, True)

        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS[:-1], f"--user-data-dir={profile}", CHROMIUM_FLAGS[-1]],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._id, self.events = b"", 0, []

    @staticmethod
    def _high(fd: int) -> int:
        """The same pipe end on a descriptor >= 10, clear of 3 and 4."""
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=60):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> dict:
        """Load url in a fresh tab; the page's PAGE_REPORT and every non-local URL it requested."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.events.clear()
        self.send("Network.enable", session=session)
        self.send("Page.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + 60
        while not any(
            e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session for e in self.events
        ):
            self.events.append(self._read(deadline))
        result = self.send(
            "Runtime.evaluate",
            {"expression": PAGE_REPORT, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        report = result["result"].get("value") or {"error": result}
        report["requests"] = sorted(
            {
                e["params"]["request"]["url"]
                for e in self.events
                if e.get("method") == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith(("file:", "data:", "blob:", "about:"))
            }
        )
        self.send("Target.closeTarget", {"targetId": target})
        return report

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium to open the built site: apt-get install -y chromium"
)
@pytest.mark.xdist_group("site")  # one worker builds the site once
def test_every_page_renders_offline_in_a_browser(site, tmp_path):
    """Every page, English and Chinese, opened from disk: all TeX typeset, no figure missing."""
    site_dir, out = site
    assert out.returncode == 0, "the site did not build"
    browser = Browser(tmp_path / "profile")
    problems = []
    try:
        for page in ENGLISH_PAGES:
            html = page[: -len(".md")] + ".html"
            for built in (site_dir / html, site_dir / "zh" / html):
                name = built.relative_to(site_dir).as_posix()
                report = browser.open(built.as_uri())
                if "error" in report:
                    problems.append(f"{name}: the page's script failed: {report['error']}")
                    continue
                leftover = sorted({t for t in ("\\(", "\\)", "\\[", "\\]", "$$") if t in report["text"]})
                if leftover:
                    problems.append(f"{name}: unrendered TeX {leftover} in the visible text")
                if report["math"] and not report["mathjax"]:
                    problems.append(f"{name}: has equations but MathJax did not load")
                if report["unrendered"]:
                    problems.append(
                        f"{name}: {len(report['unrendered'])} equations not typeset: {report['unrendered'][:3]}"
                    )
                if report["errors"]:
                    problems.append(f"{name}: TeX errors {report['errors'][:3]}")
                if report["broken_images"]:
                    problems.append(f"{name}: figures that do not load: {report['broken_images'][:3]}")
                if report["requests"]:
                    problems.append(f"{name}: requests the network: {report['requests'][:3]}")
                if page.startswith("algorithms/") and not report["code_blocks"]:
                    problems.append(f"{name}: no code block")
    finally:
        browser.close()
    assert not problems, "\n".join(problems)


# -- machine paths ------------------------------------------------------------------------------

MACHINE_PATH = re.compile(
    r"(?<![\w.~-])(?:/" + r"work/|/" + r"root/|/" + r"home/|/" + r"tmp/|/" + r"Users/|/" + r"private/var/)"
    r"|[A-Za-z]:\\" + r"Users\\"
)  # split so that this file does not match itself


def repository_text_files() -> list[Path]:
    """Tracked files and new ones not ignored (the lead commits them), text only."""
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        paths = [ROOT / name for name in names if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the ignored
        ignored = {"runs", "wandb", "site", "__pycache__", ".git", ".pytest_cache", "out", "videos"}
        paths = [p for p in ROOT.rglob("*") if p.is_file() and not ignored & set(p.relative_to(ROOT).parts)]
    files = []
    for path in paths:
        if not path.is_file():
            continue  # deleted, not yet committed
        head = path.read_bytes()[:8192]
        if b"\0" not in head:
            files.append(path)
    return files


def test_no_machine_paths_in_the_repository():
    """Docs, results, defaults and examples name paths relative to the repository, never one of
    this machine (the work tree, root's or another home directory, the temporary directory)."""
    found = []
    for path in repository_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            match = MACHINE_PATH.search(line)
            if match:
                start = max(0, match.start() - 40)
                found.append(f"{path.relative_to(ROOT)}:{number}: ...{line[start : match.end() + 40]}...")
    assert not found, f"{len(found)} machine paths:\n" + "\n".join(found[:60])


# -- one shape for every algorithm page ------------------------------------------------------------

# The second-level sections of every algorithm page (CONVENTIONS 8), in this order and no others;
# the Chinese twin uses the Chinese names. "What breaks without its defining parts" is required where
# tests/sabotage/<stem>.toml exists, "Diff against the parent" where the file names a parent. Before
# the first section: the title and what the file is, naming `algos/<stem>.py` and linking its parent.
ALGO_SECTIONS = {
    "en": ("Quick facts", "Key equations", "Pseudocode", "Implementation details",
           "What breaks without its defining parts", "Hyperparameters", "Logged metrics",
           "Diff against the parent", "Results", "References"),
    "zh": ("要点速览", "关键公式", "伪代码", "实现细节", "去掉关键部分会怎样", "超参数", "记录的指标",
           "与父文件的 diff", "结果", "参考文献"),
}  # fmt: skip
SABOTAGE_SECTION, DIFF_SECTION = 4, 7  # the two sections that depend on the file
ALGO_PAGES = sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / "algorithms").glob("*.md"))


def parent_of(stem: str) -> str | None:
    """The parent file a file's docstring names ("Parent: dqn_pendulum.py"), None for a root."""
    path = ROOT / "algos" / f"{stem}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) if path.exists() else None
    found = re.search(r"Parent:\s*`?(\w+)(?:\.py)?", doc or "")
    return found.group(1) if found and found.group(1) != "none" else None


def page_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(what comes before the first `## `, [(heading, body)]); headings inside code fences do not count."""
    intro, sections, fence = [], [], None
    for line in text.splitlines():
        mark = re.match(r"^\s*(`{3,}|~{3,})", line)
        if mark and fence is None:
            fence = mark.group(1)
        elif (
            mark
            and fence is not None
            and line.strip().startswith(fence)
            and not line.strip()[len(fence) :].strip()
        ):
            fence = None
        elif fence is None and line.startswith("## "):
            sections.append((line[3:].strip(), []))
            continue
        (sections[-1][1] if sections else intro).append(line)
    return "\n".join(intro), [(heading, "\n".join(body)) for heading, body in sections]


@pytest.mark.parametrize("page", ALGO_PAGES)
def test_every_algorithm_page_has_the_house_shape(page):
    """The sections of CONVENTIONS 8 in their order, each holding what only it can hold: the included
    code under the equations, pseudocode, the `# DEVIATION:`s, the sabotages and the hyperparameters,
    the diff and the results generated from the sources."""
    path = DOCS / page
    stem, lang = hooks.page_stem(path.name), hooks.language(page)
    parent = parent_of(stem)
    has_sabotages = (ROOT / "tests" / "sabotage" / f"{stem}.toml").exists()
    names = ALGO_SECTIONS[lang]
    expected = [
        name
        for i, name in enumerate(names)
        if (i != SABOTAGE_SECTION or has_sabotages) and (i != DIFF_SECTION or parent)
    ]
    text = path.read_text()
    intro, sections = page_sections(text)
    found = [heading for heading, _ in sections]
    assert found == expected, (
        f"docs/{page}: sections {found}, expected exactly {expected} (tests/test_docs.py::ALGO_SECTIONS)"
    )
    body = {names.index(heading): section for heading, section in sections}
    problems = []
    if not intro.startswith("# "):
        problems.append("does not start with its title (`# ...`)")
    if f"algos/{stem}.py" not in intro:
        problems.append(f"the text before the first section does not name algos/{stem}.py")
    if parent and f"{parent}.md" not in intro:
        problems.append(f"the text before the first section does not link its parent ({parent}.md)")
    if "{{ code(" not in body[1]:
        problems.append(f"'{names[1]}' includes no code ({{{{ code(...) }}}})")
    if "\\[" not in body[1] and "\\(" not in body[1]:
        problems.append(f"'{names[1]}' has no equation")
    if "```" not in body[2]:
        problems.append(f"'{names[2]}' has no pseudocode block")
    source = (ROOT / "algos" / f"{stem}.py").read_text() if (ROOT / "algos" / f"{stem}.py").exists() else ""
    if "DEVIATION:" in source and "DEVIATION" not in body[3]:
        problems.append(f"algos/{stem}.py marks a `# DEVIATION:` that '{names[3]}' does not list")
    if has_sabotages and "{{ sabotages() }}" not in body[SABOTAGE_SECTION]:
        problems.append(f"'{names[SABOTAGE_SECTION]}' does not list the sabotages ({{{{ sabotages() }}}})")
    if "{{ args_table() }}" not in body[5]:
        problems.append(f"'{names[5]}' is not generated ({{{{ args_table() }}}})")
    if parent and f'{{{{ diff("{parent}") }}}}' not in body[DIFF_SECTION]:
        problems.append(f"'{names[DIFF_SECTION]}' does not generate the diff ({{{{ diff(\"{parent}\") }}}})")
    if "{{ results() }}" not in body[8] or text.count("{{ results(") != 1:
        problems.append(
            f"'{names[8]}' must hold the page's one generated results block ({{{{ results() }}}})"
        )
    if not body[9].strip():
        problems.append(f"'{names[9]}' is empty")
    assert not problems, f"docs/{page}:\n" + "\n".join(problems)


# Wording of a development log, not of a reference page: results are facts with their command.
DEVELOPMENT_LOG = re.compile(
    r"measured (?:in|while|during) (?:the issue|developing|development)|the issue'?s?\b|"
    r"goal is \W*not\W* met|\bwe (?:tried|tuned|retuned|measured)\b|load average|quieter moment|"
    r"while developing|议题|开发时|开发过程|负载平均|我们(?:尝试|试过|调)",
    re.IGNORECASE,
)


def test_pages_and_readmes_read_as_facts_not_as_a_development_log():
    pages = [p for p in render_markdown.pages()] + [ROOT / "README.md", ROOT / "README.zh.md"]
    found = []
    for path in pages:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = DEVELOPMENT_LOG.search(line)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{number}: ...{match.group(0)}...")
    assert not found, "development-log wording (tuning history goes to commit messages):\n" + "\n".join(found)


# -- the Chinese edition --------------------------------------------------------------------------


def directives(text: str) -> list[str]:
    return [" ".join(m.group(0).split()) for m in hooks.DIRECTIVE.finditer(text)]


@pytest.mark.parametrize("page", ENGLISH_PAGES)
def test_every_english_page_has_a_chinese_twin_with_the_same_code(page):
    english = DOCS / page
    twin = english.with_name(english.name[: -len(".md")] + ".zh.md")
    if not twin.exists():
        if page in TRANSLATION_PENDING:
            pytest.xfail(f"docs/{twin.relative_to(DOCS)} is not written yet (see docs/translating.md)")
        pytest.fail(
            f"docs/{page} has no Chinese twin docs/{twin.relative_to(DOCS)} (see docs/translating.md)"
        )
    assert page not in TRANSLATION_PENDING, f"{twin.name} exists: remove {page} from TRANSLATION_PENDING"
    assert directives(twin.read_text()) == directives(english.read_text()), (
        f"docs/{twin.relative_to(DOCS)} must include the same generated blocks, in the same order, as docs/{page}"
    )
    assert re.search(r"[\u4e00-\u9fff]", twin.read_text()), f"{twin.name} has no Chinese text"


# -- the pages on a repository host ---------------------------------------------------------------


def test_docs_md_is_in_step_with_docs_and_algos():
    """docs-md/ holds every page with its code filled in, as a repository host shows it."""
    rendered, errors = render_markdown.render_all()
    assert not errors, "\n".join(f"{src.relative_to(ROOT)}: {e}" for src, e in errors.items())
    on_disk = set(render_markdown.OUT.rglob("*.md")) if render_markdown.OUT.exists() else set()
    stale = sorted(
        p.relative_to(ROOT).as_posix()
        for p, text in rendered.items()
        if not p.exists() or p.read_text() != text
    )
    extra = sorted(p.relative_to(ROOT).as_posix() for p in on_disk - set(rendered))
    assert not stale and not extra, (
        f"docs-md/ is out of date (stale or missing: {stale}; left over: {extra}): run python docs/render_markdown.py"
    )
    for path, text in rendered.items():
        left = [
            d
            for d in ("{{", "\\(", "\\[", "??? ", "!!! ")
            if d in re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)
        ]
        assert not left, f"{path.relative_to(ROOT)} still has site-only syntax {left}"


@pytest.mark.parametrize("readme", ["README.md", "README.zh.md"])
def test_readme_links_lead_to_pages_a_repository_host_can_show(readme):
    """Every relative link of the README exists, and no link leads to a page that has directives."""
    text = (ROOT / readme).read_text()
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):
            continue
        path = (ROOT / target.split("#")[0]).resolve()
        if not path.exists():
            bad.append(f"{target}: no such file")
        elif path.suffix == ".md" and hooks.DIRECTIVE.search(path.read_text()):
            bad.append(f"{target}: shows raw directives on a repository host; link docs-md/ instead")
    assert not bad, f"{readme}:\n" + "\n".join(bad)
