# syntax=docker/dockerfile:1
# Image of the sequencer: binary `sequencer` of package rill-sequencer.
# Build from the repository root (the context is the whole workspace):
#   docker build -f helm/docker/sequencer.Dockerfile -t rill-sequencer:0.1.0 .
# Checked offline by helm/tests/validate.py: the paths it copies exist, the
# binary it names is a [[bin]] of the package it builds.

# --- build: rustc as on the build machines (edition 2024 needs >= 1.85) ---
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# librdkafka is compiled from its crate's bundled sources (a C compiler, no
# cmake); protobuf through protox (no protoc). The whole workspace is
# copied: Cargo needs every member's manifest.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY services ./services
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rill-sequencer --bin sequencer \
 && install -D target/release/sequencer /out/sequencer

# --- run: glibc and libgcc only, no shell, user 65532 ("nonroot") --------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sequencer /usr/local/bin/sequencer
USER 65532:65532
ENV RILL_LISTEN=0.0.0.0:8092 RILL_TELEMETRY__LOG_FORMAT=json
EXPOSE 8092
ENTRYPOINT ["/usr/local/bin/sequencer"]
