"""Peak resident memory of a piece of work, read from the kernel's high-water mark (Linux).

The process-wide peak (``ru_maxrss``, or ``VmHWM`` left alone) remembers everything since the
process started: importing torch, loading and projecting the inputs. To see what one call
needs, reset the high-water mark to the current resident set just before it, then read it back:

    probe = PeakRSS()          # VmHWM := VmRSS; base = VmRSS
    out = attention(q, k, v)   # the work
    probe.extra_bytes()        # VmHWM - base: the most the work held at once beyond the base

or as a context manager, ``with PeakRSS() as probe: ...`` then ``probe.extra`` (bytes, read at
exit). Resident means touched pages: memory allocated but never written does not count, and
memory the allocator kept from earlier frees can be reused without raising the peak.
``PeakRSS(release=True)`` first hands that free memory back to the system (glibc
``malloc_trim``), so the work has to fault in what it uses; a fresh process is cleaner still.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["PeakRSS", "peak_rss_bytes", "release_free_memory", "reset_peak", "rss_bytes"]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError as e:
        raise RuntimeError(f"cannot read {_STATUS} ({e}); memory probes need Linux") from e
    raise RuntimeError(f"{_STATUS} has no {field} line; memory probes need Linux")


def rss_bytes() -> int:
    """The process's resident set size now (VmRSS), in bytes."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """The process's resident high-water mark (VmHWM) since start or the last ``reset_peak``."""
    return _status_bytes("VmHWM")


def reset_peak() -> None:
    """Reset the high-water mark to the current resident set (5 to clear_refs, Linux 4.0+)."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError as e:
        raise RuntimeError(f"cannot reset the peak via {_CLEAR_REFS} ({e}); needs Linux") from e


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim(0)``, all arenas).

    Memory freed by Python or torch stays resident in the allocator and a later allocation can
    reuse it without raising the peak. False where there is no glibc (nothing is released).
    """
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim(0)
    return True


class PeakRSS:
    """Extra peak resident memory since construction: VmHWM - VmRSS at the start, in bytes.

    ``release=True`` calls ``release_free_memory`` before the reset, so the base holds only
    live memory.
    """

    def __init__(self, release: bool = False) -> None:
        if release:
            release_free_memory()
        reset_peak()
        self.base = rss_bytes()
        self.extra: int | None = None

    def extra_bytes(self) -> int:
        """The high-water mark now minus the base (bytes); can be read several times."""
        return peak_rss_bytes() - self.base

    def __enter__(self) -> PeakRSS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.extra = self.extra_bytes()
