# The elafros GitHub Action image: a static binary on a distroless base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/action ./cmd/action

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/action /action
ENTRYPOINT ["/action"]
