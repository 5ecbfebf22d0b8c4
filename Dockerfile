# Multi-stage build: dependencies are resolved from the lock file in a builder, the runtime is slim and non-root.
FROM python:3.11-slim AS builder
WORKDIR /build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY omnirec ./omnirec
COPY features ./features
COPY models ./models
COPY training ./training
COPY serving ./serving
COPY cli ./cli
RUN /opt/venv/bin/pip install --no-deps .
# every numba kernel compiled once here, cached beside the installed modules
RUN /opt/venv/bin/omnirec compile-kernels

FROM python:3.11-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 omnirec
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OMNIREC_DATA_DIR=/var/lib/omnirec \
    OMNIREC_HOST=0.0.0.0 \
    OMNIREC_PORT=8000
RUN mkdir -p /var/lib/omnirec && chown omnirec /var/lib/omnirec
USER omnirec
WORKDIR /home/omnirec
EXPOSE 8000
# Production sets REDIS_URL, MLFLOW_TRACKING_URI and OMNIREC_API_KEYS; without REDIS_URL an embedded Redis starts.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"
ENTRYPOINT ["omnirec"]
CMD ["serve"]
