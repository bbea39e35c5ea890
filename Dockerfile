# syntax=docker/dockerfile:1
#
# portcullis container image.
#
#   docker build -t portcullis .
#   docker run -d --name portcullis -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v /srv/portcullis/etc:/etc/portcullis -v portcullis-data:/var/lib/portcullis portcullis
#   docker exec -it portcullis node dist/src/cli/main.js user add alice --password-stdin ...
#
# /etc/portcullis holds portcullis.yaml (see config/example-deployment.yaml), the users file and
# the TLS files; /var/lib/portcullis (a volume) holds the data directory: admin token, audit log,
# state. In a container the config must listen on 0.0.0.0 (or [::]), not 127.0.0.1.
#
# Node 22 (LTS): the dependency tree includes cookie@2, which declares node >= 22, and Node 20 is
# past its end of life. Override with --build-arg NODE_IMAGE=... if you must.
ARG NODE_IMAGE=node:22-bookworm-slim

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
    PORTCULLIS_HEALTHCHECK_URL=http://127.0.0.1:8080/.portcullis/healthz
WORKDIR /app
RUN groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid portcullis --home-dir /var/lib/portcullis --no-create-home \
      --shell /usr/sbin/nologin portcullis \
 && install -d -o portcullis -g portcullis -m 0750 /var/lib/portcullis /etc/portcullis
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
# The demo and the example deployment, for reference (the image serves /etc/portcullis/portcullis.yaml).
COPY config/portcullis.yaml config/example-deployment.yaml ./config/
USER portcullis:portcullis
VOLUME ["/var/lib/portcullis"]
EXPOSE 8080 9090
# Liveness over loopback with node's fetch (the slim image has no curl). If the config listens
# elsewhere (another port, or TLS), set PORTCULLIS_HEALTHCHECK_URL to match.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.PORTCULLIS_HEALTHCHECK_URL, { signal: AbortSignal.timeout(4000), redirect: 'manual' }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.yaml"]
