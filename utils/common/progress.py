"""Progress reports that read well on a terminal and in a log file.

On a terminal a tqdm bar redraws one line in place. Anywhere else (``> file``, a pipe, CI) a
bar would write every redraw, separated by carriage returns, into the file: megabytes over a
long run. So the bar is drawn only when its stream is a terminal; otherwise :class:`Progress`
writes a plain line every ``lines`` fraction of the work (or nothing, when the caller logs
its own periodic lines, as training does).

The environment variable ``DIFFER_PROGRESS`` overrides the terminal test: ``1`` always draws
the bar, ``0`` never does (``claims/ablation.py`` passes its own terminal's answer to the
runs whose output it relays through a pipe).
"""

import os
import sys
import time

PROGRESS_ENV = "DIFFER_PROGRESS"


def on_terminal(stream=None):
    """True when a progress bar should be drawn on ``stream`` (default: stderr, where tqdm draws).

    ``DIFFER_PROGRESS=1`` / ``0`` forces the answer; otherwise: is ``stream`` a terminal.
    """
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _plural(noun):
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


class Progress:
    """A tqdm bar on a terminal; elsewhere a plain line every ``lines`` fraction of ``total``.

    Args:
        total: units of work (int).
        desc: label, e.g. 'metrics test'; unit: name of one unit ('batch', 'model'), singular.
        enabled: False: neither a bar nor lines (``--quiet``, ``--no_progress``).
        lines: without a bar, the fraction of ``total`` between two plain lines (0.1: ten
            lines and the last); None: no lines (the caller logs its own).
        write: where plain lines and :meth:`write` messages go without a bar (default: print).
        **bar_options: passed to tqdm (e.g. ``initial``, ``dynamic_ncols``).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, total, desc, unit="item", enabled=True, lines=0.1, write=None, **bar_options):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = int(bar_options.get("initial", 0))
        self._write = write or print
        self._bar = None
        if enabled and on_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, **bar_options)
        self._every = max(1, round(self.total * lines)) if enabled and lines and self._bar is None else None
        self._start = time.time()

    @property
    def bar(self):
        """True when a bar is drawn."""
        return self._bar is not None

    def update(self, n=1):
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._every and (self.n // self._every > (self.n - n) // self._every or self.n >= self.total > self.n - n):
            self._write(
                f"{self.desc}: {self.n}/{self.total} {_plural(self.unit)} "
                f"({100 * self.n / max(self.total, 1):.0f}%, {time.time() - self._start:.0f} s)"
            )

    def set_postfix(self, **values):
        """Values shown at the end of the bar (nothing without a bar)."""
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def write(self, message, file=None):
        """A message line: above the bar (which is redrawn below it), or a plain line."""
        if self._bar is not None:
            self._bar.write(message, file=file)
        elif file is not None:
            print(message, file=file, flush=True)
        else:
            self._write(message)

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
