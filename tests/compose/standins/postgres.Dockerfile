# Stand-in for postgres:16-bookworm: Debian bookworm's PostgreSQL (15: bookworm has no 16) behind an entrypoint
# that honours what the Compose files use of the official one: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB,
# PGDATA=/var/lib/postgresql/data, listening on every address with scram-sha-256, pg_isready on PATH.
ARG BASE
FROM ${BASE}
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/lib/postgresql/*/bin /usr/lib/postgresql/bin
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
