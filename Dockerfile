# The sensor image: the three static binaries and nothing else.
#   scripts/build-images.sh            (builds the binaries, then this, and tags it)
# or by hand, here and where images can be pulled alike (FROM scratch pulls nothing):
#   scripts/build-static.sh && docker build -t ossensor .
# Run: docker run --env-file FILE --network=host IMAGE (docs/deployment.md).
FROM scratch

# Where scripts/build-static.sh puts the binaries; must be inside the build
# context and not excluded by .dockerignore.
ARG BIN_DIR=target/static/x86_64-unknown-linux-gnu/release
ARG VERSION=unknown

LABEL org.opencontainers.image.title="ossensor" \
      org.opencontainers.image.description="Privilege-separated host network sensor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# root and nobody only: the children run as 65534 unless OSSENSOR_USER says
# otherwise (a number needs no entry here).
COPY packaging/container/passwd packaging/container/group /etc/
# The children must sit beside ossensor. /run/ossensor and /etc/darktrace are
# made by ossensor at start (emptyDir volumes on a read-only root).
COPY ${BIN_DIR}/ossensor ${BIN_DIR}/ossensor-capture-worker ${BIN_DIR}/ossensor-uplink /usr/bin/

# The supervisor gives the uplink 12 s to deliver what it holds on SIGTERM:
# stop with a timeout above that (docker stop -t 20, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/ossensor"]
