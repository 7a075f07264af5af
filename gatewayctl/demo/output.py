"""The demo's readable output: step headings, indented lines, tables, and progress while it waits."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from gatewayctl.output import table


class Out:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()

    def line(self, text: str = "", indent: int = 2) -> None:
        self.stream.write((" " * indent + text if text else "") + "\n")
        self.stream.flush()

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def heading(self, number: int, total: int, title: str) -> None:
        self.line()
        self.line(f"== {number}/{total}  {title} " + "=" * max(3, 72 - len(title)), indent=0)

    def table(self, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
        for text in table(rows, columns).splitlines():
            self.line(text, indent=4)

    @contextlib.contextmanager
    def waiting(self, label: str, *, every: float = 5.0) -> Iterator[None]:
        """Show that the demo waits: a ticking counter on a terminal, a line every `every` s otherwise."""
        started = time.monotonic()
        done = threading.Event()

        def tick() -> None:
            while not done.wait(0.25 if self.tty else every):
                elapsed = time.monotonic() - started
                if self.tty:
                    self.write(f"\r  {label} ... {elapsed:4.1f}s")
                else:
                    self.line(f"  ... still {label.lower()} ({elapsed:.0f}s)")

        if self.tty:
            self.write(f"  {label} ...")
        else:
            self.line(f"{label} ...")
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        outcome = "done"
        try:
            yield
        except BaseException:
            outcome = "failed"
            raise
        finally:
            done.set()
            ticker.join()
            elapsed = time.monotonic() - started
            if self.tty:
                self.write(f"\r  {label} ... {outcome} ({elapsed:.1f}s)\n")
            else:
                self.line(f"{label}: {outcome} ({elapsed:.1f}s)")
