"""The command line: one front end per command over the use cases."""
