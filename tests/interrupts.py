"""What the tests that press Ctrl-C on a child process share."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """A ``preexec_fn`` giving the child SIGINT's default action, as a terminal's foreground
    job has it: a background job of a shell ignores SIGINT, children inherit that, and Python
    then never raises KeyboardInterrupt, so a test run from such a job would not interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
