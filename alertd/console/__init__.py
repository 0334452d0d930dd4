"""The duty desk and supervisor console: accounts, roles, the audit trail and the web face."""
