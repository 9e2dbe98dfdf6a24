"""Helpers for the test fixtures: real PostgreSQL, S3 (moto server), tmpfs, ports."""
