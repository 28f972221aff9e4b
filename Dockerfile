# syntax=docker/dockerfile:1
#
# One image for every queued program: the server (the default entrypoint),
# queuectl, and the welcome-email example pair. Static binaries on a
# distroless base: no shell, no package manager, a non-root user, CA
# certificates and time zone data (which cron schedules need; the binaries
# also embed it via -tags timetzdata, so a bare scratch image would work too).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so editing the code does not re-download them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags timetzdata -ldflags="-s -w" -o /out/ \
      ./cmd/queued \
      ./cmd/queuectl \
      ./examples/welcome-email/user-service \
      ./examples/welcome-email/email-worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
ENV QUEUED_GRPC_ADDR=:7070 \
    QUEUED_HTTP_ADDR=:7071 \
    QUEUED_LOG_FORMAT=json
# 7070: gRPC (producers, workers, queuectl). 7071: HTTP /healthz, /readyz, /metrics.
EXPOSE 7070 7071
USER nonroot:nonroot
# queued -healthcheck asks the local server's /readyz (database reachable,
# not draining); it reads the same QUEUED_HTTP_ADDR, so it finds the port.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/queued", "-healthcheck"]
ENTRYPOINT ["/usr/local/bin/queued"]
