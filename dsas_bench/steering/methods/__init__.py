"""Built-in steering methods; importing this package registers them."""
