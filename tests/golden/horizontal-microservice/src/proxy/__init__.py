"""The proxy: one request fanned out to every backend model service, the answers combined."""
