"""The text worker service (entry point; image: target `text` of the top-level Dockerfile); the work itself is in :mod:`services.tasks`."""
