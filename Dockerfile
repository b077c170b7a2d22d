# archive-node: slim Python base, non-root user, one data volume, port 11112.
# A build stage with a C compiler makes the wheel (with the C extension from
# native/), and fails if the extension is missing from it; the image gets the
# wheel only, no compiler.
FROM python:3.11-slim AS build

RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY archive ./archive
COPY native ./native
RUN python -m pip install --no-cache-dir --upgrade pip \
    && python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); \
sys.exit(not any(n.startswith('archive/_native') and n.endswith('.so') for n in names))" \
       /wheels/*.whl

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

COPY --from=build /wheels /wheels
RUN python -m pip install --upgrade pip && python -m pip install /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/archive archive \
    && mkdir -p /var/lib/archive/data && chown -R archive /var/lib/archive

USER archive
WORKDIR /var/lib/archive
VOLUME ["/var/lib/archive/data"]
EXPOSE 11112

ENTRYPOINT ["archive", "serve", "--data", "/var/lib/archive/data"]
