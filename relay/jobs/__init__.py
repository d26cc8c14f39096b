"""Periodic jobs: the monthly report and retention."""
