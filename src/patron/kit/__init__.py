"""Shared building blocks: money, clock, pagination, text validation, repository
helpers, command-line options."""
