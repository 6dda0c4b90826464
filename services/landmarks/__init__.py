"""The landmarks worker service (entry point; image: target `landmarks` of the top-level Dockerfile); the work itself is in :mod:`services.tasks`."""
