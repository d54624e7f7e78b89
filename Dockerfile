# One image for auth, orders, gateway and the Locust load generator, built from the repo root
# so every service gets the same services/common. Each compose service picks its command.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /venv
# The dependencies first, from pyproject.toml alone (a wheel of the project without its code), so
# that a change to the code reuses this layer instead of reinstalling everything. Wheels only.
COPY pyproject.toml ./
RUN /venv/bin/pip wheel --no-deps --wheel-dir /deps . \
 && /venv/bin/pip install --only-binary=:all: "$(ls /deps/authscale-*.whl)[loadtest]" \
 && /venv/bin/pip uninstall --yes authscale \
 && rm -rf /deps build ./*.egg-info
# Then our own pure-Python wheel, with the code.
COPY services ./services
COPY loadtests ./loadtests
RUN /venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /venv/bin/pip install --no-deps --only-binary=:all: /wheels/authscale-*.whl

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
