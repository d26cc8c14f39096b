"""Routing: classify each stored message and hand it to the use case its kind calls for."""
