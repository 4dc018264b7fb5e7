"""Real speech from Debian's ``pocketsphinx-testdata``: five LibriVox clips of "Sense and
Sensibility" (one reader, 16 kHz mono 16-bit, 3-7 s each, with transcripts) and five "cards"
clips (another voice, same format).

:func:`fetch_pocketsphinx_speech` only locates the test-data directory; ``selfattention data
fetch speech`` installs the pinned Debian package (as root).
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, InstallPlan, missing, register
from selfattention.apps.datasets._install import apt_install, apt_plan

NAME = "speech"
POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
PACKAGE = "pocketsphinx-testdata"
VERSION = "0.8+5prealpha+1-15"  # Debian 12's
DEB_SHA256 = "eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0"


def fetch_pocketsphinx_speech() -> Path:
    """``/usr/share/pocketsphinx/test/data`` (holding ``librivox/`` and ``cards/``);
    DataUnavailable names the fetch command. Never installs."""
    librivox = POCKETSPHINX_DIR / "librivox"
    if not (librivox / "transcription").is_file():
        raise missing(NAME, f"{librivox / 'transcription'} is not there")
    if not any(librivox.glob("*.wav")):
        raise missing(NAME, f"no .wav files in {librivox}")
    return POCKETSPHINX_DIR


def _plan() -> InstallPlan:
    return apt_plan(NAME, PACKAGE, VERSION, DEB_SHA256, POCKETSPHINX_DIR)


def _install() -> Path:
    apt_install(PACKAGE, VERSION, POCKETSPHINX_DIR / "librivox" / "transcription")
    return fetch_pocketsphinx_speech()


register(
    Dataset(
        name=NAME,
        description="LibriVox and 'cards' speech clips, 16 kHz 16-bit wav (pocketsphinx-testdata)",
        licence="BSD-2-Clause",
        locate=fetch_pocketsphinx_speech,
        plan=_plan,
        install=_install,
    )
)
