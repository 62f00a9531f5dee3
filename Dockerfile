# SPDX-License-Identifier: Apache-2.0
# emp-server's container image. Build stage: Debian 12 with the project's own bootstrap (build
# packages only), then CMake. Runtime stage: Debian 12 slim with only the shared libraries the
# binaries link (tests/deploy/check_dockerfile.py compares this list with `ldd`), a non-root
# user, and the Kubernetes backend with the pod's service account as the default.
#   docker build -t REGISTRY/emp-server:TAG .

FROM debian:12.8 AS build
WORKDIR /src
COPY scripts/bootstrap scripts/bootstrap
RUN scripts/bootstrap --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMP_BUILD_TESTS=OFF \
    && cmake --build /build -j "$(nproc)" --target emp-server emp \
    && strip /build/emp-server /build/emp

FROM debian:12.8-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       ca-certificates \
       libcurl4 \
       libhiredis0.14 \
       libjansson4 \
       libmicrohttpd12 \
       librdkafka1 \
       libsodium23 \
       libuuid1 \
       libyaml-0-2 \
       zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 emp \
    && useradd --system --uid 10001 --gid emp --home-dir /var/lib/emp --create-home emp
COPY --from=build /build/emp-server /build/emp /usr/local/bin/
USER 10001:10001
ENV EMP_LISTEN=0.0.0.0:7420 \
    EMP_CLUSTER=kubernetes \
    EMP_STATE_DIR=/var/lib/emp
EXPOSE 7420
ENTRYPOINT ["/usr/local/bin/emp-server"]
