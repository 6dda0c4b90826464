"""The fusion worker service (entry point; image: target `fusion` of the top-level Dockerfile); the work itself is in :mod:`services.tasks`."""
