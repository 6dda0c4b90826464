"""``python -m services.landmarks``: a Celery worker consuming the ``landmarks`` queue."""

from services.worker import main

raise SystemExit(main("landmarks"))
