"""Real speech from Debian's ``pocketsphinx-testdata``: five LibriVox clips of "Sense and
Sensibility" (one reader, 16 kHz mono 16-bit, 3-7 s each, with transcripts) and five "cards"
clips (another voice, same format). ``fetch()`` returns the test-data directory.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, register
from selfattention.apps.datasets._install import apt_install

POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")


def fetch_pocketsphinx_speech() -> Path:
    """``/usr/share/pocketsphinx/test/data``, holding ``librivox/`` and ``cards/`` (installed if
    needed)."""
    probe = POCKETSPHINX_DIR / "librivox" / "transcription"
    if not probe.exists():
        apt_install("pocketsphinx-testdata", probe)
    if not sorted((POCKETSPHINX_DIR / "librivox").glob("*.wav")):
        raise DataUnavailable(f"no .wav files in {POCKETSPHINX_DIR / 'librivox'}")
    return POCKETSPHINX_DIR


register(
    Dataset(
        name="speech",
        description="LibriVox and 'cards' speech clips, 16 kHz 16-bit wav (pocketsphinx-testdata)",
        licence="BSD-2-Clause",
        fetch=fetch_pocketsphinx_speech,
    )
)
