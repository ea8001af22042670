"""Builders shared by test folders (tiny models in other architectures, checkpoint writers)."""
