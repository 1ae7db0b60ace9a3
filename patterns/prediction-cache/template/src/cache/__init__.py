"""The answer cache: whole answers in Redis, and the Redis guard it goes through."""
