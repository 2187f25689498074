# Outbox: one image for the API and the worker (choose with the command).
#   docker build -t outbox .
#   docker run -e DATABASE_URL=... -e REDIS_URL=... -e OUTBOX_ENV=production -e OUTBOX_SECRET_KEYS=... outbox
#   docker run ... outbox outbox worker
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/outbox

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p app worker && touch app/__init__.py worker/__init__.py \
    && pip install . && pip uninstall -y outbox

COPY app ./app
COPY worker ./worker
RUN pip install --no-deps . && useradd --system --home /srv/outbox outbox && chown -R outbox /srv/outbox
USER outbox

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
# Apply migrations with `outbox db upgrade` (a one-off job) before starting new versions.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--no-access-log", \
     "--timeout-keep-alive", "5", "--limit-concurrency", "1000"]
