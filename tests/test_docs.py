"""Every code block in README.md, ARCHITECTURE.md and docs/*.md runs, as a reader would run it.

- ```python blocks are executed; the blocks of one page share a namespace, in page order, and run
  in a scratch folder (files they write land there);
- ```bash blocks: every ``selfattention ...`` line is parsed by the real argparse parser (an
  option that no longer exists fails), and the cheap ones (``ladder``, ``--help``) are executed;
  ``make X`` must name a Makefile target; ``pip install`` lines are not run (their extras must
  exist); ``python path.py`` / ``pytest path`` must name existing files;
- ```json blocks must parse; ```text blocks are output, not code; an untagged block fails (tag it).

Each block is its own test, ``docs/core.md-block3``: a failure names the page and the block.
Under pytest-xdist a block's test first runs the page's earlier python blocks if this worker
has not run them yet, so the order holds whatever worker the test lands on.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
PYTHON, SHELL, JSON, OUTPUT = "python", {"bash", "sh", "shell"}, "json", "text"
NOT_RUN = {"pip", "apt-get", "sudo"}  # installs: never run by a test


@dataclass(frozen=True)
class Block:
    page: Path
    index: int  # 1-based, counting every fenced block of the page
    lang: str
    code: str
    line: int

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)} block {self.index} (line {self.line})"


def _blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(page, n, m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
        for n, m in enumerate(FENCE.finditer(text), 1)
    ]


ALL = [b for page in PAGES for b in _blocks(page) if b.lang != OUTPUT]


def _id(block: Block) -> str:
    return f"{block.page.relative_to(ROOT)}-block{block.index}"


# --- python: one namespace per page, blocks in order --------------------------------------------


@dataclass
class _PageRun:
    workdir: Path
    namespace: dict = field(default_factory=lambda: {"__name__": "__docs__"})
    done: set[int] = field(default_factory=set)
    stopped: str | None = None  # why later blocks cannot run (an earlier block failed or skipped)


_RUNS: dict[Path, _PageRun] = {}


def _exec(block: Block, run: _PageRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(run.workdir)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block.code, block.name, "exec"), run.namespace)
    except Exception as err:
        # Data genuinely absent (not installed by `make`): selfattention.apps.datasets raises
        # DataUnavailable, matched by name so that this test does not import the apps layer.
        if not any(c.__name__ == "DataUnavailable" for c in type(err).__mro__):
            run.stopped = f"{block.name} failed"
            pytest.fail(f"{block.name} failed: {type(err).__name__}: {err}\n{block.code}")
        run.stopped = f"skipped: {block.name} needs data that is not installed: {err}"
        pytest.skip(run.stopped)
    finally:
        run.done.add(block.index)


def _run_python(block: Block, tmp_path_factory, monkeypatch) -> None:
    run = _RUNS.get(block.page)
    if run is None:
        run = _RUNS[block.page] = _PageRun(tmp_path_factory.mktemp(block.page.stem))
    for earlier in _blocks(block.page):
        if earlier.lang != PYTHON or earlier.index in run.done or earlier.index > block.index:
            continue
        if run.stopped:
            if run.stopped.startswith("skipped"):
                pytest.skip(run.stopped)
            pytest.fail(f"cannot run {block.name}: {run.stopped}")
        _exec(earlier, run, monkeypatch)


# --- shell: parse every selfattention line, check make targets and paths ------------------------


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))


def _extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def _commands(code: str) -> list[list[str]]:
    """The command lines of a shell block: continuations joined, comments and env vars dropped."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def _cheap(args: list[str]) -> bool:
    return args[:1] == ["ladder"] or "--help" in args or "-h" in args


def _selfattention(args: list[str], where: str) -> None:
    from selfattention.cli import build_parser, main

    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stdout):
            build_parser().parse_args(args)
    except SystemExit as exc:
        if not (exc.code == 0 and _cheap(args)):  # --help exits 0 once it has printed
            pytest.fail(f"{where}: `selfattention {shlex.join(args)}` does not parse:\n"
                        f"{stdout.getvalue()}")  # fmt: skip
        return
    if _cheap(args):
        with contextlib.redirect_stdout(stdout):
            code = main(args)
        assert code == 0, f"{where}: `selfattention {shlex.join(args)}` exited {code}"


def _shell_line(argv: list[str], where: str) -> None:
    command, args = Path(argv[0]).name, argv[1:]
    if command == "torchrun":  # torchrun [its options] -m selfattention ARGS: check ARGS
        assert "-m" in args, f"{where}: torchrun without -m MODULE"
        command, args = "python", args[args.index("-m") :]
        assert args[1] == "selfattention", f"{where}: torchrun runs {args[1]}, not selfattention"
    if command in {"python", "python3"} and args[:2] == ["-m", "selfattention"]:
        command, args = "selfattention", args[2:]
    if command == "selfattention":
        _selfattention(args, where)
    elif command == "make":
        missing = set(args) - _make_targets()
        assert not missing, f"{where}: no Makefile target {sorted(missing)}"
    elif command == "pip":
        for spec in args:
            if m := re.search(r"\[([\w,]+)\]", spec):
                unknown = set(m.group(1).split(",")) - _extras()
                assert not unknown, f"{where}: no extra {sorted(unknown)} in pyproject.toml"
    elif command in NOT_RUN:
        pass
    elif command in {"python", "python3"} and args and args[0].endswith(".py"):
        assert (ROOT / args[0]).is_file(), f"{where}: no file {args[0]}"
    elif command == "pytest" or (command in {"python", "python3"} and args[:2] == ["-m", "pytest"]):
        paths = [a.split("::")[0] for a in args if a.startswith("tests/")]
        assert paths, f"{where}: name the test file"
        for path in paths:
            assert (ROOT / path).exists(), f"{where}: no test file {path}"
    else:
        pytest.fail(f"{where}: `{argv[0]}` is neither selfattention, make, pip, python nor "
                    "pytest: teach tests/test_docs.py how to check it")  # fmt: skip


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", ALL, ids=_id)
def test_code_block(block: Block, tmp_path_factory, monkeypatch) -> None:
    if block.lang == PYTHON:
        _run_python(block, tmp_path_factory, monkeypatch)
    elif block.lang in SHELL:
        commands = _commands(block.code)
        assert commands, f"{block.name}: an empty shell block"
        for argv in commands:
            _shell_line(argv, block.name)
    elif block.lang == JSON:
        import json

        json.loads(block.code)
    else:
        pytest.fail(f"{block.name}: tag the block python, bash, json or text (got {block.lang!r})")


def test_every_page_has_code_blocks_that_run() -> None:
    assert len([b for b in ALL if b.lang == PYTHON]) >= 20
    assert len([b for b in ALL if b.lang in SHELL]) >= 10


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first = _blocks(ROOT / "README.md")[0]
    assert first.line <= 5, "the two commands come first"
    commands = [" ".join(argv) for argv in _commands(first.code)]
    assert commands == ["make demo", "make test"]
    assert all("#" in line for line in first.code.splitlines()), "each command says what it does"


def test_readme_is_short_and_links_every_docs_page() -> None:
    text = _readme()
    assert len(text.splitlines()) <= 200
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README does not link docs/{page.name}"
    assert "](ARCHITECTURE.md)" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_page_opens_with_a_heading_and_its_purpose(page: Path) -> None:
    lines = [line for line in page.read_text().splitlines() if line.strip()]
    assert lines[0].startswith("# "), f"{page.name}: start with a '# Title' line"
    assert lines[1][0].isalpha() or lines[1][0] in "*`", f"{page.name}: a one-line purpose next"


# Remarks about one particular build machine age badly; measured conditions (threads, sizes,
# load average) stay, stated as such.
MACHINE = re.compile(
    r"this machine|our machine|(shared|quiet|idle|busy|fresh|CI|project's) machine"
    r"|\b2[- ]cores?\b|two cores|2 shared|\d+ ?GiB machine",
    re.I,
)


def test_no_remarks_about_a_particular_machine() -> None:
    files = [*PAGES, *sorted((ROOT / "src").rglob("*.py"))]
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if MACHINE.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_no_generated_readme_or_contracts_page() -> None:
    assert not (ROOT / "tools" / "build_readme.py").exists()
    assert not (ROOT / "docs" / "CONTRACTS.md").exists()
    assert "## Contracts" in (ROOT / "ARCHITECTURE.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
