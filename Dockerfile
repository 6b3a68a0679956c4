# syntax=docker/dockerfile:1
# Production image: gunicorn managing uvicorn workers (settings in gunicorn.conf.py).
# Both stages share one base, so the venv's interpreter path is valid in the final image.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Only the requirements first: this layer is rebuilt when they change, not on every code edit.
COPY requirements.txt /tmp/requirements.txt
# The base image's pip installs into a venv that has no pip of its own, so no installer ships.
RUN python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The application only: tests, tooling and local files stay out (see also .dockerignore).
# The licence travels with the code, as its terms ask of every copy.
COPY LICENSE alembic.ini gunicorn.conf.py main.py manage.py ./
COPY core ./core
COPY features ./features
COPY migrations ./migrations
# Bytecode compiled once, here: the app runs with PYTHONDONTWRITEBYTECODE and cannot write to
# /app, so without it every worker would compile every module from source at each start. The
# image never changes, so the bytecode is not checked against source timestamps (which a
# reproducible build may rewrite).
RUN python -m compileall -q --invalidation-mode unchecked-hash \
        core features migrations gunicorn.conf.py main.py manage.py
# Numeric, so orchestrators can verify the user is not root (runAsNonRoot).
USER 10001:10001
EXPOSE 8000
# Liveness only; slim images have no curl, so the probe is a line of Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "main:app"]
