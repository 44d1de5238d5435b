# demo-app: a tiny HTTP service to practise the experiments on (docker/demo-app/main.go, Go
# stdlib only). Build from the docker/demo-app directory:
#   docker build -f docker/demo-app.Dockerfile -t chaos.test/demo-app:dev docker/demo-app
# tests/cluster/build-images.sh builds the same image without Docker: it runs this file's
# `go build` line on the host and takes USER, ENV, EXPOSE and ENTRYPOINT from the final stage.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod main.go ./
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/demo-app .

FROM scratch
COPY --from=build /out/demo-app /demo-app
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/demo-app"]
