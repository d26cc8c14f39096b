"""Coordinator approval by email reply: hold, decide, remind, escalate, expire.

The pipeline calls ``hold`` and ``handle_reply`` inside its transaction; the
daemon's scheduler calls ``run_due``; ``binrelay queue`` uses ``cli``.
"""

from relay.approvals.answers import handle_reply
from relay.approvals.decide import Decision, decide
from relay.approvals.flood import hold_flood_summary, update_flood_summary
from relay.approvals.requests import hold
from relay.approvals.timers import run_due, schedule

__all__ = [
    "Decision",
    "decide",
    "handle_reply",
    "hold",
    "hold_flood_summary",
    "run_due",
    "schedule",
    "update_flood_summary",
]
