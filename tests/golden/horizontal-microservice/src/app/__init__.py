"""The web API: routers, request schemas and the application factory."""
