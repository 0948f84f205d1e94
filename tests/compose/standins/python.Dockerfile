# Stand-in for python:3.11-slim-bookworm: Debian's python3 (3.11) with venv and pip at the official image's paths
# (/usr/local/bin/python, python -m pip, no EXTERNALLY-MANAGED marker); pip trusts the base's CA store.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/python3 /usr/local/bin/python3 \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \
    && rm -f /usr/lib/python3.*/EXTERNALLY-MANAGED \
    && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf
CMD ["python3"]
