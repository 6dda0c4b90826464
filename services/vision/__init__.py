"""The optional decode-once vision worker (``EMPATHY_VISION_WORKER``): face, landmarks and body from one decode."""
