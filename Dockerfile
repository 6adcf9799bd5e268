# The elafros GitHub Action image: the action binary and the Go toolchain
# that the go and go-function builders run. GitHub starts container actions
# as root with the workspace mounted at /github/workspace; the image sets
# neither USER nor WORKDIR (GitHub's Dockerfile rules for actions).
#   docker build -t elafros-action .
# GO_IMAGE is the toolchain image (golang:1.26 by default); a test that
# cannot pull builds one locally and passes it here.
ARG GO_IMAGE=golang:1.26
FROM ${GO_IMAGE} AS build
# A module proxy and checksum database of your own, if you have them
# (the tests build offline through a proxy served from the module cache).
ARG GOPROXY
ARG GOSUMDB
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY . /src
# go build fetches only the modules the action imports (runners build
# this image on every job, so less is faster than a cached download of
# all of go.sum).
RUN cd /src && go build -trimpath -ldflags="-s -w" -o /out/action ./cmd/action

FROM ${GO_IMAGE}
COPY --from=build /out/action /usr/local/bin/elafros-action
ENV CGO_ENABLED=0
ENTRYPOINT ["/usr/local/bin/elafros-action"]
