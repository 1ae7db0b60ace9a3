"""Releasing a new model: the zero-downtime swap of the model a running service serves."""
