"""The preprocessing service: an uploaded image in, the prediction service's answer out."""
