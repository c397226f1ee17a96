# audience-sync: the worker (default) and every CLI command. Multi-stage, production dependencies only, non-root.
# Out of the box it runs the bundled example (config/docker.yaml) and writes to /data; mount your own config
# folder at /app/config and pass --config (see README.md, "Deploying with Docker").
# Base image pinned by version and by the digest docker-library/repo-info records for that tag's 2026-09-19
# build; change both together.
ARG NODE_IMAGE=node:22.23.2-bookworm-slim@sha256:48e4b67d85f87bd551df43704e24d252f56cc5f8e9718841aace50f19948f0f9

FROM ${NODE_IMAGE} AS build
# Native addons (argon2, msgpackr-extract) are compiled here from source, against the image's own Node: the
# published prebuilt argon2 binary crashed with a segfault as it loaded on some x86-64 hosts (seen on Node 20).
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm_config_build_from_source=true npm ci --no-audit --no-fund --nodedir=/usr/local
COPY tsconfig.json tsconfig.build.json tsconfig.console.json ./
COPY scripts ./scripts
COPY console ./console
COPY src ./src
COPY connectors ./connectors
COPY jobs ./jobs
COPY app ./app
# The release build: no benchmarks, test fakes or tests (tsconfig.build.json).
RUN npm run build:release && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
# /app: code, config and example, owned by root (read-only to the runtime user); /data: all it writes.
# METRICS_HOST is 0.0.0.0 inside the container's own network; publish the port on 127.0.0.1 (compose does).
# MALLOC_MMAP_THRESHOLD_: glibc maps every buffer of 128 KB or more on its own and gives it back when freed;
# by default it keeps them in its heap once a large one was freed (README, Performance).
ENV NODE_ENV=production AUDIENCE_SYNC_DATA=/data METRICS_PORT=9464 METRICS_HOST=0.0.0.0 MALLOC_MMAP_THRESHOLD_=131072
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# The build's production dependencies, native addons as built there (no install, no scripts, no compiler here).
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
COPY examples ./examples
RUN install -d -o node -g node -m 0750 /data
USER node
WORKDIR /data
VOLUME /data
EXPOSE 9464
HEALTHCHECK --start-period=60s --interval=30s --timeout=5s CMD node -e "const h=process.env.METRICS_HOST;fetch('http://'+(!h||h==='0.0.0.0'||h==='::'?'127.0.0.1':h)+':'+process.env.METRICS_PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# A young generation of 64 MB per semi-space: a run keeps each batch's members alive across its request,
# and V8's default (16 MB) copied them at every scavenge (README, Performance).
ENTRYPOINT ["node", "--max-semi-space-size=64", "/app/dist/app/cli/bin.js"]
CMD ["worker", "--config", "/app/config/docker.yaml"]
