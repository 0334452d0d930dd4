"""alertd: emergency alerts for residential property management."""

__version__ = "0.1.0"
