"""Members: joining, leaving and settings by email."""
