# Helpers for lab 32 (docs/32-registry.md), to be sourced: `. docs/registry-lab.sh`.
#
# Makes a scratch directory /tmp/minibox-lab.XXXXXX, points minibox's image store
# (MINIBOX_DATA_ROOT) and config directory (MINIBOX_CONFIG) into it, and removes it all,
# the registry included, when the shell that sourced this exits.
#
#   start_registry plain     docker-registry on 127.0.0.1:5055, plain HTTP
#   start_registry secure    the same with htpasswd auth (user student) and TLS, with a
#                            CA made here and installed in $MINIBOX_CONFIG/certs.d
#   lab_image NAME           the busybox rootfs imported as an image and tagged NAME
PORT=5055
lab=$(mktemp -d /tmp/minibox-lab.XXXXXX)
export MINIBOX_DATA_ROOT="$lab/data" MINIBOX_CONFIG="$lab/config" MINIBOX_NO_PROGRESS=1
registry_pid=
trap 'if [ -n "$registry_pid" ]; then kill "$registry_pid"; { wait "$registry_pid"; } 2>/dev/null; fi
      rm -rf "$lab"' EXIT

start_registry() {
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/" || \
       curl -sk -o /dev/null "https://127.0.0.1:$PORT/"; then
        echo "port $PORT is taken: stop what listens there first" >&2
        return 1
    fi
    mkdir -p "$lab/registry"
    cat > "$lab/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $lab/registry/storage
http:
  addr: 127.0.0.1:$PORT
EOF
    if [ "$1" = secure ]; then
        (cd "$lab/registry" &&
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout ca.key -out ca.crt -days 1 -subj "/CN=lab CA" &&
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout server.key -out server.csr -subj /CN=localhost &&
         echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > san.ext &&
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
             -out server.crt -days 1 -extfile san.ext) >/dev/null 2>&1 || return 1
        htpasswd -Bbn student s3cret > "$lab/registry/htpasswd" 2>/dev/null
        cat >> "$lab/registry/config.yml" <<EOF
  tls:
    certificate: $lab/registry/server.crt
    key: $lab/registry/server.key
auth:
  htpasswd:
    realm: minibox-lab
    path: $lab/registry/htpasswd
EOF
        mkdir -p "$MINIBOX_CONFIG/certs.d/localhost:$PORT"
        cp "$lab/registry/ca.crt" "$MINIBOX_CONFIG/certs.d/localhost:$PORT/ca.crt"
    fi
    docker-registry serve "$lab/registry/config.yml" >"$lab/registry/log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
        curl -sk -o /dev/null "https://127.0.0.1:$PORT/" && return 0
        sleep 0.05
    done
    echo "docker-registry did not start: $(cat "$lab/registry/log")" >&2
    return 1
}

lab_image() {
    minibox import rootfs/ busybox:lab >/dev/null && minibox tag busybox:lab "$1"
}
