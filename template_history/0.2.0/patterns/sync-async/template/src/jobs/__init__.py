"""The job queue shared by the proxy and the workers: Redis Streams with a consumer group."""
