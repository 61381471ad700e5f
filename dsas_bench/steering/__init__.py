"""Steering: the hook manager, the method registry and the built-in methods."""
