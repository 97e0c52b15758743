# syntax=docker/dockerfile:1
# Lookout exporter image: docker build -t lookout-exporter .
# Two stages: "build" installs the package and its wheels into a virtualenv; the final stage is a
# clean slim Python with only that virtualenv, a non-root user and the heartbeat volume. Nothing in
# the final stage can compile or install packages, and nothing writes outside /var/lib/lookout and
# /tmp, so the container runs with a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m venv /opt/lookout \
    && /opt/lookout/bin/pip install --no-compile ".[postgresql,grpc]" \
    && /opt/lookout/bin/pip uninstall --yes pip \
    && /opt/lookout/bin/python -m compileall -q --invalidation-mode checked-hash /opt/lookout

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="lookout-exporter" \
      org.opencontainers.image.description="Prometheus exporter: endpoint probes, job heartbeats, host metrics" \
      org.opencontainers.image.source="https://github.com/lookout-exporter/lookout" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN python -m pip uninstall --yes pip \
    && groupadd --system --gid 10001 lookout \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin lookout \
    && mkdir -p /var/lib/lookout \
    && chown 10001:10001 /var/lib/lookout
COPY --from=build /opt/lookout /opt/lookout
ENV PATH=/opt/lookout/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/lookout"]
# The data directory is also the working directory: the only writable place besides /tmp.
WORKDIR /var/lib/lookout
USER 10001:10001
EXPOSE 9471
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9471/-/healthy', timeout=4)"]
ENTRYPOINT ["lookout-exporter"]
CMD ["run", "--web.listen-address", ":9471"]
