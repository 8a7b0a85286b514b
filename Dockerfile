# perfnode: the DICOM node (and every perfnode command) in one image.
#
# Online (the default): Debian's slim image from Docker Hub, Python and DCMTK from Debian's mirror,
# Python packages from PyPI. Air-gapped (docker-compose.airgap.yml after deploy/airgap/prepare.sh):
# BASE_IMAGE is a base built from Debian packages with debootstrap (Python and DCMTK already in it,
# so nothing is fetched) and PIP_OPTIONS installs from the wheelhouse copied in deploy/wheelhouse.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
RUN if ! command -v echoscu >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 python3-venv dcmtk ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

FROM base AS build
ARG PIP_OPTIONS=""
COPY deploy/wheelhouse/ /wheels/
COPY pyproject.toml README.md /src/
COPY perfnode /src/perfnode
RUN python3 -m venv /opt/perfnode \
 && /opt/perfnode/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_OPTIONS} "/src[postgres]"

FROM base
COPY --from=build /opt/perfnode /opt/perfnode
RUN useradd --system --create-home --uid 1000 perfnode \
 && mkdir -p /data /etc/perfnode && chown perfnode /data
USER perfnode
VOLUME ["/data"]
EXPOSE 11112
# perfnode's venv last: its pynetdicom installs Python look-alikes named echoscu, storescu …; the
# health check and a person in the container mean DCMTK's.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/perfnode/bin \
    PYTHONUNBUFFERED=1 \
    PERFNODE_DATA=/data
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s \
  CMD echoscu -aec "${PERFNODE_AE_TITLE:-PERFNODE}" 127.0.0.1 11112 || exit 1
ENTRYPOINT ["perfnode"]
CMD ["serve"]
