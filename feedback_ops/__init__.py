"""feedback-ops: the AI Feedback Platform's operations runbook as Prefect 3 flows."""
