"""``python -m services.face``: a Celery worker consuming the ``face`` queue."""

from services.worker import main

raise SystemExit(main("face"))
