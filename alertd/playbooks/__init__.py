"""Playbooks: YAML emergency plans, validated on load; a broken one is disabled, not fatal."""
