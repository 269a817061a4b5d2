"""One error path for every command-line tool (train, metrics, predict, the data tools, benchmarks).

:func:`run` calls a tool's ``main`` and turns what can go wrong into what a user can act on:

* an **expected** failure (bad input, a flag, a file, a locked folder: :class:`CLIError` and the
  classes the tool names) prints one line ``<tool>: error: <what>, <which file or flag>, <what was
  expected>`` on stderr and exits with ``status`` (1, or the tool's own);
* a **disk problem** (an OSError: no space left, quota, read-only file system, permission
  denied), wherever it happens, prints one line naming the file and what to do
  (:func:`utils.common.atomic_io.disk_problem`) and exits with ``status``;
* an **unexpected** one (a bug, a library failure) writes its traceback to a log file
  (:func:`crash_log`) and prints one line pointing to it;
* **Ctrl-C, SIGTERM, SIGHUP** raise :class:`Interrupted` (a KeyboardInterrupt) in the main
  process, so ``finally`` blocks clean up exactly as after Ctrl-C, and the tool exits with
  128 + the signal number after one line;
* **warnings** (``warnings.warn`` anywhere below, and :func:`warn`) are one line
  ``<tool>: warning: <message>``, without a source line.

Standard library only: every room may import it.
"""

import argparse
import contextlib
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings

from utils.common.atomic_io import disk_problem

LOG_DIR_ENV = "DIFFER_LOG_DIR"  # where crash logs go (default: the system's temporary folder)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class CLIError(Exception):
    """An expected failure: its message says what, which file or flag, and what was expected."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP, delivered as an exception so that clean-up code runs."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


# Expected whatever the tool: a path that is missing, in the way, or not writable.
EXPECTED = (CLIError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)

_current = []  # the tool names of the run() calls in progress (innermost last)


def tool_name():
    """The running tool's name (for one-line messages of code below the entry points)."""
    return _current[-1] if _current else os.path.splitext(os.path.basename(sys.argv[0] or "differ"))[0]


def first_line(err):
    text = str(err).strip()
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"  # not "[Errno 17] File exists: '...'"
    return text.splitlines()[0] if text else type(err).__name__


def error_line(tool, err):
    """``<tool>: error: <first line>``; a disk problem (full, read-only, permission) as
    :func:`utils.common.atomic_io.disk_problem` says it."""
    return f"{tool}: error: {disk_problem(err) or first_line(err)}"


def warn(message, tool=None, log=None):
    """One warning line on stderr (and appended to the file ``log``)."""
    line = f"{tool or tool_name()}: warning: {message}"
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    warn(str(message).strip().splitlines()[0] if str(message).strip() else category.__name__)


def crash_log(tool, err):
    """Write ``err``'s traceback to ``$DIFFER_LOG_DIR`` (default: the temporary folder); its path."""
    folder = os.environ.get(LOG_DIR_ENV) or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{tool}-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    with open(path, "w") as f:
        f.write(f"{tool} {' '.join(sys.argv[1:])}\n")
        f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    return path


@contextlib.contextmanager
def deferred_signals(signals=STOP_SIGNALS):
    """Hold back ``signals`` inside the block; deliver them (to the previous handlers) at its end.

    Only possible in the main thread (elsewhere the block runs unprotected, as
    Python delivers signals to the main thread anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in signals
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)  # now handled as it would have been without the block


def _install_signals():
    """Ctrl-C / SIGTERM / SIGHUP -> :class:`Interrupted` in this process (not in forked workers,
    which die as by default). Signals the process ignores (nohup, '&') stay ignored."""
    pid, previous = os.getpid(), {}

    def handler(signum, frame):
        if os.getpid() != pid:  # a forked worker: die as the default would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    return previous


def run(tool, main, argv=None, expected=(), status=1, interrupted_hint=""):
    """Call ``main(argv)`` as the command-line tool ``tool``; returns the exit status.

    Args:
        tool: the name printed before every message (e.g. 'metrics_rgb').
        main: the tool's main function. Its result is the status when it is an int, else 0.
        expected: exception classes whose message says everything (added to :data:`EXPECTED`).
            An exception with ``reported = True`` has printed its line already.
        status: the exit status of an expected failure.
        interrupted_hint: appended to the line after Ctrl-C / SIGTERM / SIGHUP.
    ``SystemExit`` (argparse's usage errors, training's stop after a signal) passes through.
    """
    _current.append(tool)
    previous = _install_signals()
    show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        result = main(argv)
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(
            f"{tool}: interrupted by {signal.Signals(signum).name}"
            + (f"; {interrupted_hint}" if interrupted_hint else ""),
            file=sys.stderr,
            flush=True,
        )
        return 128 + signum
    except EXPECTED + tuple(expected) as err:
        if not getattr(err, "reported", False):
            print(error_line(tool, err), file=sys.stderr, flush=True)
        return status
    except Exception as err:
        if getattr(err, "reported", False):  # its line (and traceback) are logged already
            return 1
        if disk_problem(err):
            print(error_line(tool, err), file=sys.stderr, flush=True)
            return status
        try:
            where = f"the traceback is in {crash_log(tool, err)}"
        except OSError as log_err:  # the log's folder is full or read-only too
            where = f"its traceback could not be kept ({disk_problem(log_err) or first_line(log_err)})"
        line = f"{tool}: error: unexpected {type(err).__name__}: {first_line(err)}; {where}"
        print(line, file=sys.stderr, flush=True)
        return 1
    finally:
        warnings.showwarning = show
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        _current.pop()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def exit_with(tool, main, **kw):
    """``sys.exit(run(tool, main, **kw))``: the ``if __name__ == '__main__'`` line of a tool."""
    sys.exit(run(tool, main, sys.argv[1:], **kw))


# --------------------------------------------------------------------------
# argument types (argparse ``type=``): a bad value names the flag and what was expected
# --------------------------------------------------------------------------
def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def non_negative_float(text):
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a finite non-negative number, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text}")
    return value
