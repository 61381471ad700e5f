"""Measurements: toxicity scorers and metrics, perplexity, lm-eval."""
