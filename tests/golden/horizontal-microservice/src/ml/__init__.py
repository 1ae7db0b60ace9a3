"""Model loading and inference, independent of the web framework."""
