"""A tiny progress bar on stderr, shared by the long-running entry points."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """A tiny progress bar on stderr (no tqdm dependency).

    Shown only when ``enabled`` (``None``: when stderr is a terminal). Writes one line,
    rewritten in place with ``\\r``, and ends it with a newline on :meth:`close`.

    Examples
    --------
    >>> with Progress(3, "demo", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    """

    def __init__(
        self, total: int, desc: str = "", *, enabled: bool | None = None, stream: Any = None
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.n = 0
        self._t0 = time.perf_counter()
        self._drawn = False
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        width = 24
        frac = self.n / self.total if self.total else 1.0
        filled = int(round(width * frac))
        elapsed = time.perf_counter() - self._t0
        line = (
            f"\r{self.desc:<28.28} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.n}/{self.total} {elapsed:6.1f}s"
        )
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps and redraw."""
        self.n = min(self.n + n, self.total) if self.total else self.n + n
        self._draw()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
