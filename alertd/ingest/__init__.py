"""Ingest: sources' reports become edge-triggered events, committed before they are acked."""
