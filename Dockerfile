# One image for auth, orders, gateway and the Locust load generator, built from the repo root
# so every service gets the same services/common. Each compose service picks its command.
FROM python:3.11-slim AS build
# Installed from the committed lock (uv.lock: exact versions and hashes), as `make` does; uv
# uses the image's Python and the system's CA store (an intercepting proxy's CA included).
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_PYTHON_DOWNLOADS=never UV_SYSTEM_CERTS=1 UV_NO_CACHE=1 UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/venv
WORKDIR /src
RUN python -m venv /uv && /uv/bin/pip install --quiet "uv==${UV_VERSION}"
# The dependencies first, from pyproject.toml and the lock alone, so that a change to the code
# reuses this layer instead of reinstalling everything.
COPY pyproject.toml uv.lock ./
RUN /uv/bin/uv sync --locked --no-install-project --no-build --extra loadtest --python python3
# Then the project itself, not editable: the final stage copies /venv, not /src.
COPY services ./services
COPY loadtests ./loadtests
RUN /uv/bin/uv sync --locked --no-editable --extra loadtest --python python3 \
 && rm -rf build ./*.egg-info

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
