"""Direct top-up (直充) through upstream suppliers. (Being written: until a supplier is set up,
a top-up order waits for staff like a manual one.)"""

from __future__ import annotations


def deliver_topup(order, line) -> str:
    return "awaiting"


def poll_line(line_id: int) -> str:
    return "awaiting"
