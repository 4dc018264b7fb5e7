"""Peak resident memory of a piece of work, read from the kernel's high-water mark (Linux).

The process-wide peak (``ru_maxrss``, or ``VmHWM`` left alone) remembers everything since the
process started: importing torch, loading and projecting the inputs. To see what one call
needs, reset the high-water mark to the current resident set just before it, then read it back:

    probe = PeakRSS()          # VmHWM := VmRSS; base = VmRSS
    out = attention(q, k, v)   # the work
    probe.extra_bytes()        # VmHWM - base: the most the work held at once beyond the base

or as a context manager, ``with PeakRSS() as probe: ...`` then ``probe.extra`` (bytes, read at
exit). Resident means touched pages: memory allocated but never written does not count, and
memory the allocator kept from earlier frees can be reused without raising the peak, so run
each measurement in a fresh process when the figure matters.
"""

from __future__ import annotations

__all__ = ["PeakRSS", "peak_rss_bytes", "reset_peak", "rss_bytes"]

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


class PeakRSS:
    """Extra peak resident memory since construction: VmHWM - VmRSS at the start, in bytes."""

    def __init__(self) -> None:
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
