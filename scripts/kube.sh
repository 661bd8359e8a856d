# A real Kubernetes control plane for the tests: kube-apiserver,
# kube-controller-manager and kube-scheduler 1.20.2 on etcd, all on loopback
# ports, with one fake GPU node and no kubelet (tests play the kubelet through
# the pods' status subresource). Sourced by scripts/test.sh and
# scripts/bench.sh after lib.sh; don't run it.

KUBE_VERSION=v1.20.2
KUBE_HOME="$SLIPWAY_CACHE/kube-testenv"
KUBE_BIN="$KUBE_HOME/bin"
KUBE_NODE=gpu-node-1

# Puts the four binaries into $KUBE_BIN, with Debian's etcd beside them.
# Prebuilt ones come from the workplace's shared/kube-testenv when it is
# there; otherwise they are built from Debian's `kubernetes` source package.
install_kube() {
  mkdir -p "$SLIPWAY_CACHE"
  local have=true b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd; do
    [ -x "$KUBE_BIN/$b" ] || have=false
  done
  if $have && [ "$("$KUBE_BIN/kube-apiserver" --version 2>/dev/null)" = "Kubernetes $KUBE_VERSION" ]; then
    return
  fi
  local shared="$SLIPWAY_ROOT/../shared/kube-testenv"
  if [ -f "$shared/install.sh" ]; then
    log "installing Kubernetes $KUBE_VERSION (prebuilt, from $shared)"
    KUBE_TESTENV_DIR="$KUBE_HOME" bash "$shared/install.sh" >"$SLIPWAY_CACHE/kube-install.log" 2>&1 \
      || { tail -n 20 "$SLIPWAY_CACHE/kube-install.log" >&2; die "installing Kubernetes failed"; }
  else
    build_kube
  fi
}

# deb-src entries for the machine's own bookworm `deb` sources (deb822 and
# one-line lists), so `apt-get source` uses the mirror apt already uses.
debian_source_entries() {
  python3 - /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list <<'PY'
import re, sys
for path in sys.argv[1:]:
    try:
        text = open(path).read()
    except OSError:
        continue
    if path.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and "bookworm" in fields.get("Suites", "").split():
                fields["Types"] = "deb-src"
                print("\n".join(f"{key}: {value}" for key, value in fields.items()) + "\n")
        continue
    for line in text.splitlines():
        match = re.match(r"deb\s+(?:\[([^]]*)\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
        if match and match.group(3) == "bookworm":
            options, uri, suite, components = match.groups()
            print(f"Types: deb-src\nURIs: {uri}\nSuites: {suite}\nComponents: {components.strip()}")
            signed_by = re.search(r"signed-by=(\S+)", options or "")
            if signed_by:
                print(f"Signed-By: {signed_by.group(1)}")
            print()
PY
}

# Debian bookworm's source package `kubernetes` is v1.20.2 with its vendor/
# tree; Debian itself builds only kubectl from it. About 12 minutes on two
# cores, once. Three things make it build and run with Debian's Go 1.19:
# reflect2 1.0.2 instead of the vendored 1.0.1 (1.0.1 crashes the API
# server in the runtime's map iterator), the generated OpenAPI file the
# tarball lacks, and GOPATH mode (module mode wants to rewrite go.mod).
build_kube() {
  log "building Kubernetes $KUBE_VERSION from Debian's source package (about 12 minutes, once)"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    debian_source_entries | "${sudo[@]}" tee /etc/apt/sources.list.d/slipway-debian-src.sources >/dev/null
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq dpkg-dev golang-go etcd-server \
    rsync golang-github-modern-go-reflect2-dev openssl curl >/dev/null
  local src_root="$KUBE_HOME/src" src
  mkdir -p "$src_root" "$KUBE_BIN"
  src=$(ls -d "$src_root"/kubernetes-*/ 2>/dev/null | head -n 1 || true)
  if [ -z "$src" ]; then
    (cd "$src_root" && apt-get source -qq kubernetes >/dev/null)
    src=$(ls -d "$src_root"/kubernetes-*/ | head -n 1)
  fi
  src=${src%/}
  local reflect2="$src/vendor/github.com/modern-go/reflect2"
  if [ ! -f "$reflect2/go_above_118.go" ]; then
    local license="$reflect2/LICENSE"
    cp "$license" "$src_root/reflect2.LICENSE"
    rm -rf "${reflect2:?}"/*
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$reflect2/"
    cp "$src_root/reflect2.LICENSE" "$reflect2/LICENSE"
  fi
  local gopath="$KUBE_HOME/gopath"
  mkdir -p "$gopath/src/k8s.io"
  ln -sfn "$src" "$gopath/src/k8s.io/kubernetes"
  (
    export GOPATH="$gopath" GO111MODULE=off GOFLAGS= GOPROXY=off CGO_ENABLED=0 GOCACHE="$KUBE_HOME/gocache"
    cd "$gopath/src/k8s.io/kubernetes"
    [ -f pkg/generated/openapi/zz_generated.openapi.go ] || nice -n 19 make gen_openapi KUBE_VERBOSE=0
    # The version stamp hack/lib/version.sh would give this source.
    local flags="-s -w" pkg
    for pkg in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
      flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
      flags+=" -X $pkg.gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56 -X $pkg.gitTreeState=archive"
    done
    nice -n 19 go build -p 2 -ldflags "$flags" -o "$KUBE_BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  ) >"$SLIPWAY_CACHE/kube-build.log" 2>&1 || { tail -n 30 "$SLIPWAY_CACHE/kube-build.log" >&2; die "building Kubernetes failed"; }
  ln -sfn "$(command -v etcd)" "$KUBE_BIN/etcd"
}

# Starts the control plane with its state in DIR, on free ports; each
# process leads its own group, recorded for stop_kube. The API server keeps
# an audit log of Slipway's service accounts (any namespace) in
# DIR/audit.log: the RBAC test compares what they did with what
# deploy/base/rbac.yaml grants. Sets KUBE_ADMIN_CONFIG and KUBE_AUDIT_LOG.
start_kube() {
  local dir=$1
  local pki="$dir/pki" etcd_port peer_port api_port kcm_port sched_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  kcm_port=$(free_port); sched_port=$(free_port)
  mkdir -p "$pki" "$dir/etcd"
  KUBE_PIDS=()
  (
    cd "$pki"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key ca.key -sha256 -days 30 -subj /CN=slipway-test-ca -out ca.crt 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    sign() { # name subject extensions
      openssl genrsa -out "$1.key" 2048 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
        -extfile "$3" -out "$1.crt" 2>/dev/null
    }
    sign apiserver /CN=kube-apiserver server.ext
    sign admin /CN=admin/O=system:masters client.ext
    sign kcm /CN=system:kube-controller-manager client.ext
    sign scheduler /CN=system:kube-scheduler client.ext
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "making the test cluster's certificates failed"
  local who
  for who in admin kcm scheduler; do
    cat >"$dir/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$pki/ca.crt"}}]
users: [{name: $who, user: {client-certificate: "$pki/$who.crt", client-key: "$pki/$who.key"}}]
contexts: [{name: test, context: {cluster: test, user: $who}}]
current-context: test
EOF
  done
  cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # The controller manager's own service accounts.
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF
  kube_bg "$dir/etcd.log" "$KUBE_BIN/etcd" --name test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" --unsafe-no-fsync
  wait_http "http://127.0.0.1:$etcd_port/health" 60
  # No endpoint reconciler: the `kubernetes` Service may not point at a
  # loopback address. Logs and exec go to the node's InternalIP (nothing
  # listens there: no kubelet) rather than a DNS lookup of the node's name.
  kube_bg "$dir/kube-apiserver.log" "$KUBE_BIN/kube-apiserver" \
    --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$api_port" --insecure-port=0 \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --client-ca-file="$pki/ca.crt" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=Node,RBAC \
    --endpoint-reconciler-type=none --kubelet-preferred-address-types=InternalIP \
    --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log" --audit-log-format=json \
    --profiling=false --v=0
  KUBE_ADMIN_CONFIG="$dir/admin.kubeconfig"
  KUBE_AUDIT_LOG="$dir/audit.log"
  local kubectl=("$KUBE_BIN/kubectl" --kubeconfig "$KUBE_ADMIN_CONFIG")
  kube_wait 120 "the test API server" "${kubectl[@]}" get --raw /readyz
  # The node lifecycle controller is off: it would taint the heartbeat-less
  # node 40 s after start.
  kube_bg "$dir/kube-controller-manager.log" "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$dir/kcm.kubeconfig" --authentication-kubeconfig="$dir/kcm.kubeconfig" \
    --authorization-kubeconfig="$dir/kcm.kubeconfig" --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --port=0 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --controllers='*,-nodelifecycle' --v=0
  kube_bg "$dir/kube-scheduler.log" "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" --bind-address=127.0.0.1 \
    --secure-port="$sched_port" --port=0 --leader-elect=false --v=0
  "${kubectl[@]}" apply -f - >/dev/null <<EOF || die "creating the test node failed"
apiVersion: v1
kind: Node
metadata:
  name: $KUBE_NODE
  labels: {kubernetes.io/hostname: $KUBE_NODE, kubernetes.io/os: linux, nvidia.com/gpu.present: "true"}
EOF
  local now
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" -o /dev/null \
    -X PATCH -H 'Content-Type: application/merge-patch+json' \
    "https://127.0.0.1:$api_port/api/v1/nodes/$KUBE_NODE/status" --data-binary @- <<EOF || die "marking the test node Ready failed"
{"status":{
  "capacity":{"cpu":"16","memory":"64Gi","nvidia.com/gpu":"4","pods":"110"},
  "allocatable":{"cpu":"16","memory":"64Gi","nvidia.com/gpu":"4","pods":"110"},
  "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"fake node (no kubelet)","lastHeartbeatTime":"$now","lastTransitionTime":"$now"}],
  "addresses":[{"type":"InternalIP","address":"127.0.0.1"}],
  "nodeInfo":{"architecture":"amd64","operatingSystem":"linux","kubeletVersion":"v0.0.0-fake","kubeProxyVersion":"v0.0.0-fake","machineID":"","systemUUID":"","bootID":"","kernelVersion":"","osImage":"fake","containerRuntimeVersion":"fake://0"}}}
EOF
  # Admission gives a new node the not-ready taint; the (disabled) node
  # lifecycle controller would lift it.
  "${kubectl[@]}" taint node "$KUBE_NODE" node.kubernetes.io/not-ready- >/dev/null 2>&1 || true
  "${kubectl[@]}" apply --server-side -f "$SLIPWAY_ROOT/deploy/crds/" >/dev/null \
    || die "installing the CRDs in the test cluster failed"
  local crd
  for crd in seldondeployments.machinelearning.seldon.io inferenceservices.serving.kserve.io \
    models.mlops.seldon.io experiments.mlops.seldon.io; do
    kube_wait 60 "the CRD $crd" kube_crd_established "$crd" "${kubectl[@]}"
  done
}

kube_crd_established() { # crd, kubectl...
  local crd=$1; shift
  [ "$("$@" get crd "$crd" \
    -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}')" = True ]
}

kube_prints() { # command...: succeeds when it prints something
  [ -n "$("$@" 2>/dev/null)" ]
}

kube_bg() { # log, command...
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  KUBE_PIDS+=($!)
}

kube_wait() { # seconds, what, command...
  local seconds=$1 what=$2 waited=0; shift 2
  until "$@" >/dev/null 2>&1; do
    waited=$((waited + 1))
    [ "$waited" -le "$seconds" ] || die "$what did not come up within ${seconds}s"
    sleep 1
  done
}

stop_kube() {
  local pid
  for pid in "${KUBE_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${KUBE_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 20 ]; do sleep 0.5; waited=$((waited + 1)); done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  KUBE_PIDS=()
}

# Namespace NS with deploy/base/rbac.yaml applied, as a cluster admin would, and
# a kubeconfig at OUT for its ServiceAccount `slipway` (its token Secret).
kube_service_account_config() {
  local namespace=$1 out=$2 secret token server
  local kubectl=("$KUBE_BIN/kubectl" --kubeconfig "$KUBE_ADMIN_CONFIG")
  "${kubectl[@]}" create namespace "$namespace" >/dev/null
  "${kubectl[@]}" -n "$namespace" apply -f "$SLIPWAY_ROOT/deploy/base/rbac.yaml" >/dev/null
  kube_wait 30 "the slipway ServiceAccount's token" \
    kube_prints "${kubectl[@]}" -n "$namespace" get sa slipway -o 'jsonpath={.secrets[0].name}'
  secret=$("${kubectl[@]}" -n "$namespace" get sa slipway -o 'jsonpath={.secrets[0].name}')
  [ -n "$secret" ] || die "no token Secret for $namespace/slipway"
  token=$("${kubectl[@]}" -n "$namespace" get secret "$secret" -o 'jsonpath={.data.token}' | base64 -d)
  server=$("${kubectl[@]}" config view -o 'jsonpath={.clusters[0].cluster.server}')
  cat >"$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "$server", certificate-authority: "$(dirname "$KUBE_ADMIN_CONFIG")/pki/ca.crt"}}]
users: [{name: slipway, user: {token: "$token"}}]
contexts: [{name: test, context: {cluster: test, user: slipway, namespace: $namespace}}]
current-context: test
KUBECONFIG
  chmod 600 "$out"
}
