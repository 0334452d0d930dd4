"""MQTT: the broker connection, and profiles that read each ecosystem's messages."""
