# syntax=docker/dockerfile:1
# Keel's image: `keel api | worker --queues … | slack | migrate` (ENTRYPOINT keel).
# Built by `docker build -t keel .`; the chart (helm/keel) runs it as uid 10001 with a read-only
# root filesystem. Not built in this repository's CI (no Docker there): docs/deployment.md.

# ---- the web UI's browser libraries (package.json: marked, dompurify), served by the API
FROM node:22-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
# axe-core is a devDependency (the browser tests' accessibility checks), not shipped
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# ---- Python dependencies and Keel, in a virtual environment copied into the runtime image
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/keel
ENV PATH=/opt/keel/bin:$PATH
# torch first, from PyTorch's CPU index: PyPI's default wheel pulls in several GB of CUDA
# libraries. The pin matches pyproject.toml, so `pip install .` keeps this wheel.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY workflows ./workflows
COPY activities ./activities
COPY infra ./infra
COPY api ./api
COPY slack_app ./slack_app
COPY workers ./workers
RUN pip install . && rm -rf /src
# temporal/setup.sh: the namespace and search-attribute set-up (the chart's set-up Job runs it)
COPY --chmod=755 temporal/setup.sh /opt/keel/bin/keel-temporal-setup
# api/web/pages.py serves node_modules from next to the installed `api` package
COPY --from=web /web/node_modules /opt/keel/lib/python3.11/site-packages/node_modules

# ---- runtime
FROM python:3.11-slim
ARG KEEL_UID=10001
RUN groupadd --system --gid ${KEEL_UID} keel \
 && useradd --system --uid ${KEEL_UID} --gid keel --home-dir /home/keel --create-home --shell /usr/sbin/nologin keel \
 && mkdir -p /var/lib/keel/blobs /var/cache/keel \
 && chown keel:keel /var/lib/keel/blobs /var/cache/keel
COPY --from=build /opt/keel /opt/keel
ENV PATH=/opt/keel/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/var/cache/keel/huggingface \
    KEEL_DATA_DIR=/tmp/keel-data \
    KEEL_BLOB_PATH=/var/lib/keel/blobs
WORKDIR /home/keel
USER 10001:10001
EXPOSE 8000 8081 9100 9464
ENTRYPOINT ["keel"]
CMD ["api"]
