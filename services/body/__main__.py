"""``python -m services.body``: a Celery worker consuming the ``body`` queue."""

from services.worker import main

raise SystemExit(main("body"))
