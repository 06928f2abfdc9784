# numbaserve: TF Serving's REST API over a numba engine.
#   docker build -t numbaserve .
#   docker run --rm -p 8501:8501 -v "$PWD/models:/models:ro" numbaserve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBASERVE_CACHE_DIR=/var/cache/numbaserve

RUN useradd --create-home --uid 10001 --user-group numbaserve \
    && mkdir -p /var/cache/numbaserve /models \
    && chown numbaserve:numbaserve /var/cache/numbaserve

WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY service/ service/

# The same install and warm commands as `make serve` (tests/integration/test_docker.py).
RUN python -m pip install -e ".[importers]"
USER 10001:10001
# Compile every kernel into NUMBASERVE_CACHE_DIR now, not on the first request.
RUN numbaserve warm

VOLUME ["/models"]
EXPOSE 8501
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/readyz', timeout=2)"]

# SIGTERM drains requests in flight and exits 0 within --drain_seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["numbaserve"]
CMD ["--rest_api_host=0.0.0.0", "--rest_api_port=8501", "--model_config_file=/models/models.config"]
