"""The body worker service (entry point; image: target `body` of the top-level Dockerfile); the work itself is in :mod:`services.tasks`."""
