"""Reviewing examples: which to show (filters, paging), what a reviewer does to them, and statistics."""
