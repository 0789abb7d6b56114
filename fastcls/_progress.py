"""Progress on stderr for long work, honest about compilation.

* On a terminal: a tqdm bar with a live elapsed time. While numba compiles a kernel
  for the first time (the first call on a machine; later calls load it from the
  cache), the bar says so instead of sitting frozen at 0/N.
* Elsewhere (CI logs, ``| tee``, a file): one plain line per step, with the elapsed
  time and the part of it spent compiling, so a log never shows long silences.

Compilation is observed through numba's event API (``numba:compile`` events, see
:func:`compile_seconds`), so the words "compiling" appear only when numba really
compiles, never when it loads a kernel from the cache.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

__all__ = ["Progress", "compile_seconds", "compiling_now", "COMPILE_NOTE"]

#: what the user is told while a kernel compiles
COMPILE_NOTE = "compiling kernels (first use; cached afterwards)"

_LOCK = threading.Lock()
_STATE = {"installed": False, "depth": 0, "started": 0.0, "total": 0.0}


def _install_listener() -> None:
    """Register (once) a listener that times top-level numba compilations."""
    with _LOCK:
        if _STATE["installed"]:
            return
        from numba.core import event

        class _CompileClock(event.Listener):
            def on_start(self, ev: Any) -> None:
                with _LOCK:
                    if _STATE["depth"] == 0:
                        _STATE["started"] = time.perf_counter()
                    _STATE["depth"] += 1

            def on_end(self, ev: Any) -> None:
                with _LOCK:
                    _STATE["depth"] = max(0, _STATE["depth"] - 1)
                    if _STATE["depth"] == 0:
                        _STATE["total"] += time.perf_counter() - _STATE["started"]

        event.register("numba:compile", _CompileClock())
        _STATE["installed"] = True


def compile_seconds() -> float:
    """Seconds this process has spent compiling numba kernels (since fastcls started
    counting: the first call of this function, of :class:`Progress`, or of
    :func:`fastcls.warmup`). A kernel loaded from the on-disk cache adds nothing.
    """
    _install_listener()
    with _LOCK:
        total = _STATE["total"]
        if _STATE["depth"]:
            total += time.perf_counter() - _STATE["started"]
        return float(total)


def compiling_now() -> bool:
    """Whether numba is compiling a kernel at this moment (in any thread)."""
    _install_listener()
    with _LOCK:
        return bool(_STATE["depth"])


class Progress:
    """Progress of ``total`` steps on stderr (see the module docstring).

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        What the steps are.
    enabled : bool or None
        ``None``: shown only when the stream is a terminal. ``True`` on a stream that
        is not a terminal prints one line per step.
    stream : file-like, optional
        Default ``sys.stderr``.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> with Progress(2, "demo", enabled=True, stream=log) as bar:
    ...     bar.update()
    ...     bar.update()
    >>> print(log.getvalue().splitlines()[-1][:12])
    demo: 2/2 in
    """

    #: seconds between refreshes of the terminal bar (live elapsed time)
    refresh_seconds = 0.5

    def __init__(
        self, total: int, desc: str = "", *, enabled: bool | None = None, stream: Any = None
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.n = 0
        self._t0 = time.perf_counter()
        self._c0 = compile_seconds() if self.enabled else 0.0
        self._bar: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._said_compiling = False
        if not self.enabled:
            return
        if self.tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total, desc=desc, file=self.stream, leave=True, dynamic_ncols=True
            )
        self._ticker = threading.Thread(target=self._tick, name="fastcls-progress", daemon=True)
        self._ticker.start()

    # -- reporting
    def _compile_part(self) -> float:
        return compile_seconds() - self._c0

    def _tick(self) -> None:
        """Keep the terminal bar's time live; announce compilation as it happens."""
        while not self._stop.wait(self.refresh_seconds):
            busy = compiling_now()
            if self._bar is not None:
                self._bar.set_postfix_str(COMPILE_NOTE if busy else "", refresh=False)
                self._bar.refresh()
            elif busy and not self._said_compiling:
                self._said_compiling = True
                self._line(f"{self.desc}: {COMPILE_NOTE} ...")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps."""
        if self.total:
            n = max(0, min(n, self.total - self.n))
        self.n += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str("", refresh=False)
            self._bar.update(n)
            return
        elapsed = time.perf_counter() - self._t0
        compiled = self._compile_part()
        note = f", {compiled:.1f} s of it compiling" if compiled >= 0.05 else ""
        self._line(f"{self.desc}: {self.n}/{self.total} in {elapsed:.1f} s{note}")

    def close(self) -> None:
        """Finish: stop the live refresh and end the bar's line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
