# syntax=docker/dockerfile:1
# holdfast: one binary, every role. Build and run:
#   docker build -t holdfast .
#   docker run --rm -e REDIS_URL=redis://redis:6379/ -e HOLDFAST_PROBE_URL=http://127.0.0.1:5010/health/live holdfast worker
# HOLDFAST_PROBE_URL is what the health check asks: the role's admin
# /health/live (worker 5010, ingress 5011, api 5021, exporter 9121,
# dashboard 8000).

# The toolchain rust-toolchain.toml pins.
ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# Stripped, without debug info: the runtime image carries one small binary.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p holdfast \
    && install -D -m 0755 target/release/holdfast /out/holdfast

# glibc and libgcc, no shell, no package manager, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="holdfast" \
      org.opencontainers.image.description="Services on Redis that keep working when things break: request/reply and jobs over Redis Streams, a read-through cache, metrics, a dashboard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/holdfast /usr/local/bin/holdfast
# distroless nonroot, by number so a runtime can check it is not root.
USER 65532:65532
ENV HOLDFAST_LOG_FORMAT=json \
    HOLDFAST_PROBE_URL=http://127.0.0.1:5010/health/live
# ingress 5009 (admin 5011), worker admin 5010, api 5020 (admin 5021),
# exporter 9121, dashboard 8000.
EXPOSE 5009 5010 5011 5020 5021 8000 9121
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/holdfast", "probe"]
ENTRYPOINT ["/usr/local/bin/holdfast"]
CMD ["--help"]
