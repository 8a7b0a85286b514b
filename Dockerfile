# perfnode: the DICOM node (C-STORE/C-ECHO SCP and the rest of perfnode) in one image.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends dcmtk \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/perfnode
COPY pyproject.toml README.md ./
COPY perfnode ./perfnode
RUN pip install --no-cache-dir ".[postgres]"

RUN useradd --system --create-home --uid 1000 perfnode \
 && mkdir -p /data && chown perfnode /data
USER perfnode
VOLUME ["/data"]
EXPOSE 11112

ENV PERFNODE_DATA=/data
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s \
  CMD echoscu -aec PERFNODE 127.0.0.1 11112 || exit 1
ENTRYPOINT ["perfnode"]
CMD ["serve"]
