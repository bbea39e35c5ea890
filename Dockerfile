# syntax=docker/dockerfile:1
#
# portcullis container image.
#
#   docker build -t portcullis .
#   docker run -d --name portcullis -p 8080:8080 \
#     -v /srv/portcullis/etc:/etc/portcullis:ro -v portcullis-data:/var/lib/portcullis portcullis
#   docker exec -i portcullis portcullis user add alice --password-stdin < alice.pw
#   docker exec portcullis portcullis lockdown on
#
# /etc/portcullis (read-only is fine) holds portcullis.yaml and the TLS files; /var/lib/portcullis
# (a volume, writable by uid 10001) is the data directory: admin token, audit log, state, and the
# users file when the config names it there. In a container the config must listen on 0.0.0.0 (or
# [::]), not 127.0.0.1. deploy/compose.yaml and deploy/kubernetes/ run two instances with Redis.
#
# Node 24, the current LTS: the dependency tree includes cookie@2, which declares node >= 22, and
# Node 20 is past its end of life. Override with --build-arg NODE_IMAGE=... if you must.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: compile TypeScript ----------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's `prepare` script would compile before the sources are copied.
# No dependency has an install script (argon2 ships prebuilt binaries as optional packages).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- deps: production node_modules only -------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    PORTCULLIS_CONFIG=/etc/portcullis/portcullis.yaml
WORKDIR /app
# The service's user and group are numeric (10001) so that Kubernetes' runAsNonRoot can check them
# and files on volumes can be chowned to them without a passwd entry on the host.
RUN groupadd --gid 10001 portcullis \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/portcullis --no-create-home \
      --shell /usr/sbin/nologin portcullis \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/portcullis \
 && install -d -o root -g 10001 -m 0750 /etc/portcullis
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
# `portcullis` on PATH (the bin's shebang finds the image's node), for `docker exec` and the health check.
RUN ln -s /app/dist/src/cli/main.js /usr/local/bin/portcullis && portcullis --version
# The demo and the example deployment, for reference (the image serves $PORTCULLIS_CONFIG).
COPY config/portcullis.yaml config/example-deployment.yaml ./config/
USER 10001:10001
VOLUME ["/var/lib/portcullis"]
EXPOSE 8080 9090
# GET /.portcullis/healthz on the listener the config names (TLS and PROXY header included), 3 s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["portcullis", "healthcheck"]
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["serve"]
