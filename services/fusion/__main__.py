"""``python -m services.fusion``: a Celery worker consuming the ``fusion`` queue."""

from services.worker import main

raise SystemExit(main("fusion"))
