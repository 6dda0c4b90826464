"""``python -m services.vision``: a Celery worker consuming the ``vision`` queue (face + landmarks + body, one decode)."""

from services.worker import main

raise SystemExit(main("vision"))
