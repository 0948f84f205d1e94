# Offline stand-in base: Debian bookworm (debootstrap --variant=minbase, imported with `docker import`) plus
# Debian's ca-certificates and the CA bundle the host's pip trusts, so PyPI and npm answer inside builds here.
# A test fixture only: what users run are the official images the Dockerfile and Compose files name.
ARG ROOTFS
FROM ${ROOTFS}
COPY host-trust.crt /usr/local/share/ca-certificates/host-trust.crt
RUN printf '%s\n' \
        'deb http://deb.debian.org/debian bookworm main' \
        'deb http://deb.debian.org/debian bookworm-updates main' \
        'deb http://deb.debian.org/debian-security bookworm-security main' > /etc/apt/sources.list \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
ENV LANG=C.UTF-8
CMD ["bash"]
