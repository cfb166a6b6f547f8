"""A worker's child processes end with it.

RQ forks its scheduler into a child process of `kameng worker`. A worker stopped the normal
way stops that child too; a worker killed outright (SIGKILL, the out-of-memory killer) left it
running, an orphan holding the scheduler's lock until its heartbeat lapsed, and piling up with
every restart. On Linux each multiprocessing child of the worker now asks the kernel for
SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), which RQ's scheduler handles as a normal
stop; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from multiprocessing import util

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_children_with(owner: object) -> None:
    """Make every child process multiprocessing starts from this process (while `owner` is
    alive: the worker) receive SIGTERM when this process dies."""
    if not sys.platform.startswith("linux"):
        return
    util.register_after_fork(owner, _make_child_end_with(os.getpid()))


def _make_child_end_with(parent: int):
    def ask_for_sigterm(_owner) -> None:  # runs in the child, right after the fork
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
            return
        if os.getppid() != parent:  # the parent died before the request: stop now
            os.kill(os.getpid(), signal.SIGTERM)

    return ask_for_sigterm
