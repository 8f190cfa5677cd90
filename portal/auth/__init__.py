"""Accounts, passwords, API tokens, login throttling and permissions."""
