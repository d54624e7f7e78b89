# One image for auth, orders, gateway and the Locust load generator, built from the repo root
# so every service gets the same services/common. Each compose service picks its command.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY loadtests ./loadtests
# Our own pure-Python wheel first, then everything it needs from wheels only (no compilers).
RUN python -m venv /venv \
 && /venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /venv/bin/pip install --only-binary=:all: "$(ls /wheels/authscale-*.whl)[loadtest]"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/venv/bin:$PATH
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin authscale \
 && mkdir -p /keys/signing /keys/public && chown -R authscale /keys
COPY --from=build /venv /venv
WORKDIR /app
COPY loadtests ./loadtests
USER authscale
EXPOSE 8080 8081 8082
CMD ["python", "-m", "services.gateway"]
