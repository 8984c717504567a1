"""Run the command: exec it, or, as PID 1, spawn it, forward signals and reap zombies."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from entrypoint.errors import (
    EXIT_CANNOT_EXEC,
    EXIT_INIT_FAILED,
    EXIT_NOT_FOUND,
    EntrypointError,
)

__all__ = ["FORWARDED", "exec_command", "run_command", "supervise"]

FORWARDED: tuple[signal.Signals, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
    signal.SIGWINCH,
)
# Python ignores these; an exec'd program must get the default back.
_RESET = (signal.SIGPIPE, signal.SIGXFSZ)


def _exec_error(argv: list[str], err: OSError) -> EntrypointError:
    if isinstance(err, FileNotFoundError):
        return EntrypointError(EXIT_NOT_FOUND, f"command not found: {argv[0]}")
    return EntrypointError(EXIT_CANNOT_EXEC, f"cannot execute {argv[0]}: {err.strerror or err}")


def exec_command(argv: list[str]) -> None:
    """Replace this process with the command (not PID 1: someone else is init)."""
    for sig in _RESET:
        signal.signal(sig, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - exec of the configured command is the job
    except OSError as err:
        raise _exec_error(argv, err) from None


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def supervise(argv: list[str]) -> int:
    """PID 1 duties: run argv as a child, forward signals, reap everything, return its code."""
    waited = {*FORWARDED, signal.SIGCHLD}
    # Blocked before the spawn, so no signal is lost between spawn and the wait loop.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        child = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            setsigmask=old_mask,
            setsigdef=(*FORWARDED, *_RESET, signal.SIGCHLD),
        )
    except OSError as err:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise _exec_error(argv, err) from None
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            # Already gone: its SIGCHLD is pending and ends the loop.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, info.si_signo)
            continue
        code = _reap(child)
        if code is not None:
            _reap(-1)  # orphans that exited together with the child
            return code


def _reap(child: int) -> int | None:
    """Reap every exited process; return the child's exit code once it is among them."""
    code: int | None = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        except OSError as err:
            raise EntrypointError(EXIT_INIT_FAILED, f"waitpid: {err.strerror}") from None
        if pid == 0:
            return code
        if pid == child:
            code = _exit_code(status)


def run_command(argv: list[str]) -> int:
    """Supervise as PID 1, otherwise exec (returns only on PID 1)."""
    if os.getpid() == 1:
        return supervise(argv)
    exec_command(argv)
    raise AssertionError("unreachable")  # pragma: no cover
