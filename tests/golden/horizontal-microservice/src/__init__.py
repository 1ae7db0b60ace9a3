"""The service's code: ``app`` (HTTP) and ``ml`` (the model)."""
