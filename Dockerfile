# The elafros GitHub Action image: the action binary and the Go toolchain
# that the go and go-function builders run. GitHub starts container actions
# as root with the workspace mounted at /github/workspace; the image sets
# neither USER nor WORKDIR (GitHub's Dockerfile rules for actions).
#   docker build -t elafros-action .
# GO_IMAGE is the toolchain image (golang:1.26 by default); a test that
# cannot pull builds one locally and passes it here.
ARG GO_IMAGE=golang:1.26
FROM ${GO_IMAGE} AS build
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum /src/
RUN cd /src && go mod download
COPY . /src
RUN cd /src && go build -trimpath -ldflags="-s -w" -o /out/action ./cmd/action

FROM ${GO_IMAGE}
COPY --from=build /out/action /usr/local/bin/elafros-action
ENV CGO_ENABLED=0
ENTRYPOINT ["/usr/local/bin/elafros-action"]
