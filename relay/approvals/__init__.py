"""Coordinator approval by email reply: hold, decide, remind, escalate, expire.

The pipeline calls ``requests.hold`` and ``answers.handle_reply`` inside its
transaction; the daemon's scheduler calls ``timers.run_due``; ``binrelay
queue`` (``relay.cli.queue``) calls ``decide.decide``. Import the module you
need: this package's ``__init__`` imports nothing, so no module of it can
reach another through it.
"""
