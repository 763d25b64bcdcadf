# syntax=docker/dockerfile:1
# Build stage: a wheel of the service (with its migrations bundled) and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip build
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN python -m build --wheel --outdir /wheels \
    && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/rrg-*.whl

# Runtime stage: slim, non-root, configured entirely by environment.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RRG_ENV=production \
    RRG_HOST=0.0.0.0 \
    RRG_PORT=8000
RUN useradd --system --create-home --uid 10001 rrg
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER rrg
WORKDIR /home/rrg
EXPOSE 8000
# RRG_DATABASE_URL=postgresql://user:pass@host:5432/rrg, RRG_SECRET_KEY and RRG_AUDIT_KEY must
# be provided.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"RRG_PORT\",\"8000\")}/healthz', timeout=2)" || exit 1
CMD ["rrg", "serve"]
