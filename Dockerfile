# mtls-guard container image: `docker build -t mtls-guard:0.1.0 .`
#
# No image can be built on the machines this project is developed on (no container
# runtime), so this file has never been built by its authors: it is kept simple
# enough to be checked by reading. deploy/ expects the image as `mtls-guard:0.1.0`
# unless you set another name with kustomize (see deploy/README.md).

# Build: the release binary, linked against glibc (Debian 12).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole source tree (see .dockerignore): Cargo.toml names benches and scripts
# that must exist even though only the binary is built.
COPY . .
RUN cargo build --release --locked --bin mtls-guard

# Run: distroless with glibc and libgcc (Debian 12, like the builder), no shell,
# no package manager. The `nonroot` variant's user is 65532, the uid deploy/ runs as.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/mtls-guard /usr/local/bin/mtls-guard
USER 65532:65532
# 8443: webhook (HTTPS); 8080: /healthz, /readyz, /metrics (HTTP).
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/mtls-guard", "serve"]
