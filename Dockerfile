# syntax=docker/dockerfile:1
# wsgate container image: `docker build -t wsgate .` (the Helm chart's image).
#
# Runtime: distroless cc (glibc + libgcc + CA certificates, no shell, no package manager), user
# 65532 "nonroot". The builder is Debian bookworm like the runtime, so the glibc the binary links
# against is the one it runs on.

FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependency layer: build every dependency against stub sources. It is rebuilt only when Cargo.toml
# or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources (the whole context, minus .dockerignore, so a future build.rs, include_str! or
# explicit [[example]] target keeps building). Touch the crate roots so cargo rebuilds the crate even
# if their mtimes predate the stub build above.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/wsgate /wsgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /wsgate /usr/local/bin/wsgate
USER 65532:65532
# --http-port, --https-port, --admin-port
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/wsgate"]
CMD ["run", "--kubernetes"]
