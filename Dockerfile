# syntax=docker/dockerfile:1
# Tandem: build with dev dependencies, ship production dependencies and dist/ only.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# npm install, not npm ci: the lock file written by npm 11 lacks other platforms' optional
# packages, which npm ci refuses (see .ci/run). Versions still come from the lock file.
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY console ./console
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    TANDEM_HOST=0.0.0.0 \
    TANDEM_PORT=8080 \
    TANDEM_CONFIG_DIR=/app/config \
    TANDEM_POLICIES_DIR=/app/policies
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node package.json ./
COPY --chown=node:node config ./config
COPY --chown=node:node policies ./policies
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8080
# Listening on 0.0.0.0 requires TANDEM_API_TOKENS (and TANDEM_ADMIN_TOKEN for /admin).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.TANDEM_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve"]
