"""Built-in steering methods, one module each; ``dsas_bench.steering.registry`` registers them lazily."""
