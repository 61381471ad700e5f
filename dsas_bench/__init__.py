"""dsas_bench: benchmark activation steering with and without DSAS."""
__version__ = "0.1.0"
