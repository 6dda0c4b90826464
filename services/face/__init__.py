"""The face worker service (entry point; image: target `face` of the top-level Dockerfile); the work itself is in :mod:`services.tasks`."""
