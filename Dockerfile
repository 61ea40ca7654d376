# One image for the API (default), the worker (`python worker.py`) and the gateway
# simulator (`python -m gateway.simulator`); docker-compose.yml runs all three.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# Bytecode now, as the image's user cannot write it later: the workflow sandbox
# imports the workflow modules for every workflow it starts (see worker.py).
RUN pip install --no-deps . \
    && python -m compileall -q /app \
    && useradd --create-home --uid 10001 payments \
    && mkdir -p /data/archive \
    && chown -R payments /data \
    && chmod 700 /data /data/archive

USER payments

# Production: built-in keys, the demo page and an anonymous codec are refused
# (payments/production.py). In a container the servers must listen beyond loopback.
# A named volume on /data/archive starts out with this directory's owner and mode.
ENV PAYMENTS_ENV=production \
    PAYMENTS_API_HOST=0.0.0.0 \
    PAYMENTS_SIMULATOR_HOST=0.0.0.0 \
    PAYMENTS_DATA_DIR=/data \
    PAYMENTS_ARCHIVE_DIR=/data/archive

EXPOSE 8000 8100

CMD ["python", "-m", "api"]
