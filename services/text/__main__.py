"""``python -m services.text``: a Celery worker consuming the ``text`` queue."""

from services.worker import main

raise SystemExit(main("text"))
