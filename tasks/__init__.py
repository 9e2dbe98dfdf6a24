"""Retriable Prefect tasks, one module per system they touch, and the plain helpers
behind them."""
