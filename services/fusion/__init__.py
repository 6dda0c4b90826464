"""The fusion worker service (Dockerfile + entry point); the work itself is in :mod:`services.tasks`."""
