# One image for every Python process of imgconv; the subcommand chooses:
#   imgconv migrate | api | worker | worker-liveness | operator   (`imgconv --help`)
# Build: `make images` (podman or docker). The base is a build argument so that machines
# without registry access can build on a stand-in (scripts/images/standin_bases.sh).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# Only for builds behind a TLS-intercepting proxy: the CA bundle pip should trust (mounted at
# build time by scripts/images/build.sh, never copied into the image).
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# binutils only here, for `strip`: wheels ship their native code with symbols (uvloop alone
# 13 MB -> 2 MB); the final stage gets the stripped files and no toolchain.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/imgconv
# Dependencies first, from the lock (exact versions, hashes checked): this layer is reused
# until requirements/runtime.lock changes.
COPY requirements/runtime.lock /tmp/runtime.lock
RUN /opt/imgconv/bin/pip install --require-hashes --no-deps -r /tmp/runtime.lock
COPY pyproject.toml README.md /src/
COPY core /src/core
COPY api /src/api
COPY worker /src/worker
COPY operator /src/operator
COPY cli /src/cli
COPY migrations /src/migrations
# The project itself (its dependencies are all in already), then pip goes: the final image
# installs nothing at run time.
RUN /opt/imgconv/bin/pip install --no-deps /src \
    && /opt/imgconv/bin/pip uninstall -y -q pip setuptools \
    && find /opt/imgconv -depth -type d -name tests -exec rm -rf {} + \
    && find /opt/imgconv -name '*.so*' -type f -exec strip --strip-unneeded {} +

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/imgconv/imgconv
LABEL org.opencontainers.image.title="imgconv" \
      org.opencontainers.image.description="imgconv API, worker, operator and migrations" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 imgconv \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin imgconv
COPY --from=build /opt/imgconv /opt/imgconv
# Bytecode was compiled at install: nothing needs to write outside /tmp (read-only root).
ENV PATH=/opt/imgconv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMGCONV_BUILD_REVISION=${REVISION}
WORKDIR /opt/imgconv
USER 10001:10001
EXPOSE 8000
# Whichever subcommand runs: the api/operator health endpoint, or the worker's heartbeat.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["imgconv", "healthcheck"]
# imgconv is PID 1 itself (exec form, no shell): SIGTERM reaches Celery's main process only,
# which then finishes its running conversions (warm shutdown) before it exits.
ENTRYPOINT ["imgconv"]
CMD ["api", "--host", "0.0.0.0"]
