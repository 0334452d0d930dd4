"""Incidents: committed events go through the engine; its decisions are stored."""
