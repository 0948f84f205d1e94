# Stand-in for node:20-bookworm-slim: the host's own Node.js (its `node` binary and the npm and corepack it ships;
# Debian bookworm's nodejs is 18, older than the dashboard's engines field), at the official image's paths;
# npm trusts the base's CA store.
ARG BASE
FROM ${BASE}
COPY node /usr/local/bin/node
COPY node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && mkdir -p /usr/local/etc \
    && printf 'cafile=/etc/ssl/certs/ca-certificates.crt\nfund=false\naudit=false\nupdate-notifier=false\n' \
        > /usr/local/etc/npmrc \
    && node --version && npm --version
CMD ["node"]
