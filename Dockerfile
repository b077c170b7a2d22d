# archive-node: slim Python base, non-root user, one data volume, port 11112.
# Mirrors the Makefile's install step (pip install of the project from this tree).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /opt/archive-node
COPY pyproject.toml README.md LICENSE ./
COPY archive ./archive
RUN python -m pip install --upgrade pip && python -m pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/archive archive \
    && mkdir -p /var/lib/archive/data && chown -R archive /var/lib/archive

USER archive
WORKDIR /var/lib/archive
VOLUME ["/var/lib/archive/data"]
EXPOSE 11112

ENTRYPOINT ["archive", "serve", "--data", "/var/lib/archive/data"]
