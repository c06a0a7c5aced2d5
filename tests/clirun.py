"""The `ratio-losses` command run in the test process: `cli.main(argv)` with stdout and stderr captured, returned as a
finished process would be (returncode, stdout, stderr). For the error cases, which need no process of their own;
`tests/integration/test_cli.py` keeps real processes for the exit-code contract."""
import contextlib
import io
from types import SimpleNamespace

from ratio_losses.cli import main


def run_cli(*args) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors exit with 2
            code = e.code if isinstance(e.code, int) else 1
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def like_a_terminal():
    """`preexec_fn` for a command a test interrupts with SIGINT: SIGINT at its default disposition and unblocked, as an
    interactive shell starts a command. A test run started in the background by a non-interactive shell (`make test &`,
    nohup) ignores SIGINT, and exec keeps an ignored signal ignored: without this, Ctrl-C would never reach the command
    under test there (measured: every xdist worker of such a run had SIGINT at SIG_IGN)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
