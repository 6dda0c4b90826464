"""The audio worker service (entry point; image: target `audio` of the top-level Dockerfile); the work itself is in :mod:`services.tasks`."""
