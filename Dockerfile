# bearerd container image: a multi-stage build, non-root, no build tools in the final image.
# Base images are pinned by tag; pin by digest in your registry mirror for reproducible builds.
# Run (config and secrets mounted read-only; as a sidecar it shares the app's network namespace):
#   docker run --read-only -v /etc/bearerd:/etc/bearerd:ro --network container:legacy-app bearerd

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[speed]"

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
# Only the wheels built above are installable here (--no-index), so their versions are the pins.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels "bearerd[speed]" \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/bearerd bearerd
USER 10001
WORKDIR /home/bearerd
# Proxy port and admin port. Inside a pod both stay on 127.0.0.1 unless the config says otherwise.
EXPOSE 8080 9180
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9180/healthz', timeout=2)"]
ENTRYPOINT ["bearerd"]
CMD ["run", "-c", "/etc/bearerd/bearerd.toml", "--log-format", "json"]
