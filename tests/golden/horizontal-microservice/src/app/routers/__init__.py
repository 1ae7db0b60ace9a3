"""One router per concern, assembled by ``src.app.main.create_app``."""
