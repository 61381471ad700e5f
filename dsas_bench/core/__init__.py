"""The shared core: errors, the registry, models, hooks, activation capture, generation and data."""
