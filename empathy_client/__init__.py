"""The Python client of the empathic valence service: ``from empathy_client import Client``.

:class:`Client` wraps the public API (submit, wait with a progress callback, results, list, delete, batch);
:mod:`empathy_client.batch` runs a folder of videos resumably; :mod:`empathy_client.webhooks` verifies the
signature of completion callbacks. Standard library and ``requests`` only.
"""

from empathy_client.batch import BatchReport, FileOutcome, find_videos, run_batch
from empathy_client.client import ApiError, Client, Job, ModalityProgress, Page, Result
from empathy_client.webhooks import WebhookVerificationError, verify

__all__ = ["ApiError", "BatchReport", "Client", "FileOutcome", "Job", "ModalityProgress", "Page", "Result",
           "WebhookVerificationError", "find_videos", "run_batch", "verify"]
