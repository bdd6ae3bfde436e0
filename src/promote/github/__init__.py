"""GitHub integration: REST transport, sticky PR comment, Actions runner interface (receives rendered strings)."""
