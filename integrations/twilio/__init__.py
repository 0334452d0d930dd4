"""Twilio: SMS and voice through the official SDK's async client."""
