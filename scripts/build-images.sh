#!/bin/sh
# Builds the static binaries (scripts/build-static.sh), then the sensor and
# collector images, each tagged latest, MAJOR and MAJOR.MINOR.PATCH (the
# crates' version):
#   ${IMAGE_PREFIX}ossensor:{latest,0,0.1.0}   from ./Dockerfile
#   ${IMAGE_PREFIX}vsensor:{latest,0,0.1.0}    from ./vsensor/Dockerfile
# IMAGE_PREFIX defaults to localhost/ (what the tests and manifests use);
# set it to a registry path to push, e.g. IMAGE_PREFIX=registry.example/ossensor/.
# ENGINE=podman (default) or docker. SKIP_STATIC=1 reuses the binaries.
set -eu
cd "$(dirname "$0")/.."

engine=${ENGINE:-podman}
prefix=${IMAGE_PREFIX:-localhost/}

if [ "${SKIP_STATIC:-0}" != 1 ]; then
    scripts/build-static.sh
fi

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ossensor-supervisor"))')
major=${version%%.*}
case $version in
*.*.*) ;;
*) echo "build-images: unexpected version '$version'" >&2; exit 1 ;;
esac

# Nothing to pull (FROM scratch); never reach for a registry.
pull=""
if [ "$engine" = podman ]; then
    pull="--pull=never"
fi

build() { # name dockerfile
    # shellcheck disable=SC2086 # $pull is empty or one word
    "$engine" build $pull -f "$2" --build-arg "VERSION=$version" \
        -t "$prefix$1:$version" -t "$prefix$1:$major" -t "$prefix$1:latest" .
}
build ossensor Dockerfile
build vsensor vsensor/Dockerfile

"$engine" image ls --filter "reference=$prefix*sensor" 2>/dev/null ||
    "$engine" image ls
echo "build-images: ${prefix}ossensor and ${prefix}vsensor tagged $version, $major, latest"
