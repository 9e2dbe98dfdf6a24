"""Flows: one module per runbook procedure, each reading like the runbook's steps."""
