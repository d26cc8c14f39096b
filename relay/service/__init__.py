"""Service and runtime: configuration in use, the clock, templates, tokens, the daemon's loop."""
