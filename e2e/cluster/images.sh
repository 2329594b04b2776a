#!/usr/bin/env bash
# Builds the e2e cluster's container images without any registry and leaves
# each one as a docker-archive in $IMAGE_CACHE (default ~/.cache/wsgate-e2e/images):
#
#   rust:1.95-bookworm      builder base: debootstrap --variant=minbase (+ gcc, libc6-dev,
#                           ca-certificates) plus the host's Rust toolchain
#   distroless cc nonroot   runtime base: the Debian packages distroless is made of, user 65532
#   wsgate                  the top-level Dockerfile, unchanged (buildah bud)
#   echo                    bench/'s echo_backend on the runtime base
#   pause                   tools/cmd/pause, a static Go program
#
#   e2e/cluster/images.sh            build what is missing or out of date (no-op when cached)
#   e2e/cluster/images.sh --list     print "NAME ARCHIVE" of every image the node imports
#
# Each step is skipped when its input hash (stored next to the archive / as an
# image label) is unchanged, so a warm run costs seconds.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNC=/usr/sbin/runc
BUILDAH=(buildah --storage-driver overlay)
DEBIAN_MIRROR=${E2E_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TOOLCHAIN=$(rustc --print sysroot)
WSGATE_TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/charts/wsgate/Chart.yaml")
WSGATE_REF=${WSGATE_IMAGE%:*}:$WSGATE_TAG

archive_list() {
  echo "$PAUSE_IMAGE $IMAGE_CACHE/pause.tar"
  echo "$WSGATE_REF $IMAGE_CACHE/wsgate.tar"
  echo "$ECHO_IMAGE $IMAGE_CACHE/echo.tar"
}

if [[ ${1:-} == --list ]]; then
  archive_list
  exit 0
fi

mkdir -p "$IMAGE_CACHE"

# label_of IMAGE: the e2e.inputs label of a local buildah image, or nothing.
label_of() {
  "${BUILDAH[@]}" inspect --type image --format '{{index .ImageAnnotations "e2e.inputs"}}' "$1" 2>/dev/null || true
}

# commit_rootfs DIR IMAGE HASH CONFIG...: an image of DIR's contents.
commit_rootfs() {
  local dir=$1 image=$2 hash=$3
  shift 3
  local ctr
  ctr=$("${BUILDAH[@]}" from --pull=never scratch)
  tar -C "$dir" -cf "$dir.tar" .
  "${BUILDAH[@]}" add "$ctr" "$dir.tar" / >/dev/null
  rm -f "$dir.tar"
  "${BUILDAH[@]}" config --annotation "e2e.inputs=$hash" "$@" "$ctr"
  "${BUILDAH[@]}" commit --rm -q "$ctr" "$image" >/dev/null
}

# The builder base: what the Dockerfile's FROM rust:1.95-bookworm needs (a Debian
# bookworm with a C toolchain and cargo/rustc on PATH).
build_builder_base() {
  local hash
  hash=$( (echo v1 "$DEBIAN_MIRROR"; rustc --version; cargo --version) | sha256sum | cut -c1-16)
  [[ $(label_of "$BUILDER_BASE") == "$hash" ]] && return 0
  log "building $BUILDER_BASE (debootstrap bookworm + host Rust toolchain; a few minutes)"
  local root
  root=$(mktemp -d /var/tmp/wsgate-e2e-builder.XXXXXX)
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    bookworm "$root" "$DEBIAN_MIRROR" >"$IMAGE_CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$IMAGE_CACHE/debootstrap.log" >&2; rm -rf "$root"; die "debootstrap failed"; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # rustc finds its sysroot relative to its own binary, so bin/ + lib/ under /usr/local/rust work.
  mkdir -p "$root/usr/local/rust/bin" "$root/usr/local/cargo"
  cp -a "$TOOLCHAIN/bin/rustc" "$TOOLCHAIN/bin/cargo" "$root/usr/local/rust/bin/"
  cp -a "$TOOLCHAIN/lib" "$root/usr/local/rust/"
  [[ -d $TOOLCHAIN/libexec ]] && cp -a "$TOOLCHAIN/libexec" "$root/usr/local/rust/"
  commit_rootfs "$root" "$BUILDER_BASE" "$hash" \
    --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash
  rm -rf "$root"
}

# The runtime base: gcr.io/distroless/cc-debian12 is these Debian packages,
# unpacked (no maintainer scripts, no shell, no package manager), plus passwd
# entries for root and nonroot (65532).
RUNTIME_DEBS=(base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libstdc++6 libgomp1 gcc-12-base)
build_runtime_base() {
  local hash
  hash=$( (echo v1 "${RUNTIME_DEBS[@]}"; apt-cache policy "${RUNTIME_DEBS[@]}" | grep Candidate) | sha256sum | cut -c1-16)
  [[ $(label_of "$RUNTIME_BASE") == "$hash" ]] && return 0
  log "building $RUNTIME_BASE from Debian packages"
  local work root deb
  work=$(mktemp -d /var/tmp/wsgate-e2e-runtime.XXXXXX)
  root=$work/root
  mkdir -p "$root"
  (cd "$work" && apt-get download "${RUNTIME_DEBS[@]}" >/dev/null) || { rm -rf "$work"; die "apt-get download failed"; }
  for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$root"
  done
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/info"
  # ca-certificates builds its bundle in a maintainer script, which is not run here: the bundle
  # of the same Debian release's package, as installed on this host, is the same file.
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/root"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  chmod 1777 "$root/tmp"
  chown 65532:65532 "$root/home/nonroot"
  chmod 700 "$root/root"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$root/etc/group"
  commit_rootfs "$root" "$RUNTIME_BASE" "$hash" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532:65532 --workingdir /home/nonroot
  rm -rf "$work"
}

# push_archive IMAGE FILE HASH: docker-archive of IMAGE (RepoTags = the fully
# qualified name, which `ctr images import` keeps as is).
push_archive() {
  local image=$1 file=$2 hash=$3
  rm -f "$file" "$file.inputs"
  "${BUILDAH[@]}" push -q "$image" "docker-archive:$file.tmp:$image" >/dev/null
  mv -f "$file.tmp" "$file"
  echo "$hash" >"$file.inputs"
}

fresh() { [[ -f $1 && -f $1.inputs && $(cat "$1.inputs") == "$2" ]]; }

# wsgate from the unchanged Dockerfile. buildah's --layers cache keeps the
# dependency layer, so a source change recompiles only the wsgate crate.
build_wsgate() {
  local hash file=$IMAGE_CACHE/wsgate.tar
  hash=$( (
    cd "$REPO"
    label_of "$BUILDER_BASE"
    label_of "$RUNTIME_BASE"
    git ls-files -s -- Dockerfile .dockerignore Cargo.toml Cargo.lock src build.rs 2>/dev/null
    git diff HEAD -- Dockerfile Cargo.toml Cargo.lock src 2>/dev/null
  ) | sha256sum | cut -c1-16)
  fresh "$file" "$hash" && return 0
  log "building $WSGATE_REF from the Dockerfile (cold: a release build of wsgate, several minutes)"
  local start=$SECONDS
  (
    cd "$REPO"
    nice -n 10 "${BUILDAH[@]}" bud --runtime "$RUNC" --pull=never --network=host --layers \
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      -f Dockerfile -t "$WSGATE_REF" . >"$IMAGE_CACHE/wsgate-build.log" 2>&1
  ) || { tail -30 "$IMAGE_CACHE/wsgate-build.log" >&2; die "buildah bud failed (log: $IMAGE_CACHE/wsgate-build.log)"; }
  log "built $WSGATE_REF in $((SECONDS - start))s"
  push_archive "$WSGATE_REF" "$file" "$hash"
}

# The echo app: bench/'s echo_backend (WebSocket echo + /stats), on the runtime base.
build_echo() {
  local hash file=$IMAGE_CACHE/echo.tar bin
  hash=$( (
    cd "$REPO"
    label_of "$RUNTIME_BASE"
    git ls-files -s -- bench/Cargo.toml bench/Cargo.lock bench/src
    git diff HEAD -- bench/Cargo.toml bench/src
  ) | sha256sum | cut -c1-16)
  fresh "$file" "$hash" && return 0
  log "building $ECHO_IMAGE (bench echo_backend)"
  (cd "$REPO/bench" && nice -n 10 cargo build --release --locked --bin echo_backend >"$IMAGE_CACHE/echo-build.log" 2>&1) ||
    { tail -30 "$IMAGE_CACHE/echo-build.log" >&2; die "building echo_backend failed"; }
  bin=$REPO/bench/target/release/echo_backend
  local ctr
  ctr=$("${BUILDAH[@]}" from --pull=never "$RUNTIME_BASE")
  "${BUILDAH[@]}" copy --chmod 0755 "$ctr" "$bin" /usr/local/bin/echo-backend >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/usr/local/bin/echo-backend"]' --cmd '["0.0.0.0:8080"]' \
    --user 65532:65532 --port 8080 "$ctr"
  "${BUILDAH[@]}" commit --rm -q "$ctr" "$ECHO_IMAGE" >/dev/null
  push_archive "$ECHO_IMAGE" "$file" "$hash"
}

# The pod sandbox image.
build_pause() {
  local hash file=$IMAGE_CACHE/pause.tar
  hash=$( (cd "$CLUSTER_HERE/tools" && go version && cat go.mod cmd/pause/*.go) | sha256sum | cut -c1-16)
  fresh "$file" "$hash" && return 0
  log "building $PAUSE_IMAGE"
  local work ctr
  work=$(mktemp -d /var/tmp/wsgate-e2e-pause.XXXXXX)
  (cd "$CLUSTER_HERE/tools" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/pause" ./cmd/pause)
  ctr=$("${BUILDAH[@]}" from --pull=never scratch)
  "${BUILDAH[@]}" copy --chmod 0755 "$ctr" "$work/pause" /pause >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  "${BUILDAH[@]}" commit --rm -q "$ctr" "$PAUSE_IMAGE" >/dev/null
  rm -rf "$work"
  push_archive "$PAUSE_IMAGE" "$file" "$hash"
}

build_pause
build_runtime_base
build_echo
build_builder_base
build_wsgate
