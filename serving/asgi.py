"""ASGI entry point for uvicorn workers: `serving.asgi:app` (settings from the environment)."""

from serving.app import create_app

app = create_app()
