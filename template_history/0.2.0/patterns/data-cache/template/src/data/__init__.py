"""Data items: the store they are read from and the Redis cache of their preprocessed tensors."""
