#!/usr/bin/env bash
# Builds what the Gateway API conformance run needs beyond the cluster suite's images (run.sh
# calls it after e2e/cluster/build.sh):
#
#   echo-basic   the suite's own HTTP echo backend, built from the source of the pinned
#                conformance module exactly as its docker/Dockerfile.echo-basic does (its
#                .go.mod/.go.sum become go.mod/go.sum; CGO_ENABLED=0; -trimpath), on the
#                cluster's runtime base, as a docker-archive in $IMAGE_CACHE/echo-basic.tar
#                under the name the suite's manifests use; run.sh adds the other tags
#   the suite    `go test -c` of this module -> e2e/.bin/conformance.test
#
# Each step is skipped when its inputs are unchanged.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
CONF_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BUILDAH=(buildah --storage-driver overlay)
# The names the suite's manifests (base/ and tests/ of the module) give the echo-basic image.
# The GATEWAY-HTTP tests use only echo-basic; every tag gets the binary built from the pinned
# module's source (the suite's own backend, at the suite's own version).
ECHO_BASIC_IMAGES=(registry.k8s.io/gateway-api/echo-basic:v1.5.1 registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3)
SUITE_MODULE=sigs.k8s.io/gateway-api/conformance
SUITE_VERSION=$(sed -n "s|^\t$SUITE_MODULE \(v[^ ]*\)$|\1|p" "$CONF_HERE/go.mod")
[[ -n $SUITE_VERSION ]] || die "no $SUITE_MODULE version in $CONF_HERE/go.mod"

if [[ ${1:-} == --list ]]; then
  echo "${ECHO_BASIC_IMAGES[*]} $IMAGE_CACHE/echo-basic.tar"
  exit 0
fi

label_of() {
  "${BUILDAH[@]}" inspect --type image --format '{{index .ImageAnnotations "e2e.inputs"}}' "$1" 2>/dev/null || true
}

build_echo_basic() {
  local file=$IMAGE_CACHE/echo-basic.tar hash src work ctr
  src=$(cd "$CONF_HERE" && go mod download -json "$SUITE_MODULE@$SUITE_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  hash=$( (echo v1 "$SUITE_VERSION"; go version; label_of "$RUNTIME_BASE") | sha256sum | cut -c1-16)
  [[ -f $file && -f $file.inputs && $(cat "$file.inputs") == "$hash" ]] && return 0
  [[ -n $(label_of "$RUNTIME_BASE") ]] || die "$RUNTIME_BASE is missing (run e2e/cluster/images.sh)"
  log "building ${ECHO_BASIC_IMAGES[0]} from $SUITE_MODULE@$SUITE_VERSION/echo-basic"
  work=$(mktemp -d /var/tmp/wsgate-e2e-echo-basic.XXXXXX)
  cp -r "$src/echo-basic" "$work/src"
  chmod -R u+w "$work/src"
  mv -f "$work/src/.go.mod" "$work/src/go.mod"
  mv -f "$work/src/.go.sum" "$work/src/go.sum"
  (cd "$work/src" && CGO_ENABLED=0 nice -n 19 go build -p "${E2E_BUILD_JOBS:-1}" -trimpath \
    -ldflags="-buildid= -s -w" -o "$work/echo-basic" .) || { rm -rf "$work"; die "building echo-basic failed"; }
  ctr=$("${BUILDAH[@]}" from --pull=never "$RUNTIME_BASE")
  "${BUILDAH[@]}" copy --chmod 0755 "$ctr" "$work/echo-basic" /echo-basic >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/echo-basic"]' --cmd '[]' --workingdir / --user 65532:65532 \
    --annotation "e2e.inputs=$hash" "$ctr"
  "${BUILDAH[@]}" commit --rm -q "$ctr" "${ECHO_BASIC_IMAGES[0]}" >/dev/null
  rm -rf "$work"
  rm -f "$file" "$file.inputs"
  "${BUILDAH[@]}" push -q "${ECHO_BASIC_IMAGES[0]}" "docker-archive:$file.tmp:${ECHO_BASIC_IMAGES[0]}" >/dev/null
  mv -f "$file.tmp" "$file"
  echo "$hash" >"$file.inputs"
}

build_echo_basic
mkdir -p "$REPO/e2e/.bin"
(cd "$CONF_HERE" && nice -n 19 go test -p "${E2E_BUILD_JOBS:-1}" -c -o "$REPO/e2e/.bin/conformance.test" .)
