# syntax=docker/dockerfile:1
# One parametrized Dockerfile for every mailpipe image: --build-arg SERVICE=ingress|parser|
# classifier|enricher|crm-sink|mailpipe builds that binary (static, CGO off) and copies it onto
# an empty base with CA certificates, a non-root user and the healthcheck binary. Nothing in the
# image is written at run time except $TMPDIR (/tmp: mount an emptyDir or tmpfs there), so the
# containers run with a read-only root filesystem.
#
#   docker build --build-arg SERVICE=ingress --build-arg VERSION=1.2.3 \
#     --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/mailpipe/ingress:1.2.3 .

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE is required" >&2; exit 1; }
WORKDIR /src
# Module files first, so the dependency download is cached across source changes.
COPY pkg/go.mod pkg/go.sum pkg/
COPY schemas/go.mod schemas/
COPY services/go.mod services/go.sum services/
WORKDIR /src/services
ENV GOWORK=off CGO_ENABLED=0 GOFLAGS=-trimpath
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
WORKDIR /src
COPY pkg pkg
COPY schemas schemas
COPY services services
WORKDIR /src/services
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -tags timetzdata -ldflags "-s -w" -o /out/service "./${SERVICE}" && \
    go build -ldflags "-s -w" -o /out/healthcheck ./healthcheck
# The runtime's only writable path and its user: uid/gid 65532 (nonroot), no login shell.
RUN mkdir -p /out/rootfs/tmp /out/rootfs/etc && chmod 1777 /out/rootfs/tmp && \
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /out/rootfs/etc/passwd && \
    echo 'nonroot:x:65532:' > /out/rootfs/etc/group

FROM scratch
ARG SERVICE
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/mailpipe/mailpipe
LABEL org.opencontainers.image.title="mailpipe-${SERVICE}" \
      org.opencontainers.image.description="mailpipe ${SERVICE}: inbound-email pipeline on Kafka" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/rootfs/ /
COPY --from=build /out/service /usr/local/bin/service
COPY --from=build /out/healthcheck /usr/local/bin/healthcheck
ENV TMPDIR=/tmp MAILPIPE_ADMIN_ADDR=:9090
USER 65532:65532
# 9090 admin (/healthz, /readyz, /metrics, the console); ingress also 2525 (SMTP), 8080 (HTTP).
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/healthcheck"]
ENTRYPOINT ["/usr/local/bin/service"]
