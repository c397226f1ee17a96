# audience-sync: the worker (default) and every CLI command. Multi-stage, Node 22, non-root, production deps only.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY connectors ./connectors
COPY jobs ./jobs
COPY bench ./bench
RUN npm run build

FROM node:22-bookworm-slim
ENV NODE_ENV=production METRICS_PORT=9464
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
COPY examples ./examples
USER node
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "fetch('http://127.0.0.1:'+process.env.METRICS_PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/src/cli/bin.js"]
CMD ["worker", "--config", "/app/config/audience-sync.yaml"]
