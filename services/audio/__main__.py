"""``python -m services.audio``: a Celery worker consuming the ``audio`` queue."""

from services.worker import main

raise SystemExit(main("audio"))
