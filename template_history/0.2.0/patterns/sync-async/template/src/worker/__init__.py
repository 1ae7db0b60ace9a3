"""The queue worker: a separate process that runs the slow model on queued jobs."""
