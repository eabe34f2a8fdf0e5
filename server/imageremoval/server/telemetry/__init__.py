"""Telemetry: names in one place, providers, metrics, structured logs, RPC spans and the scrape endpoint."""
