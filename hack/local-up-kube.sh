# Sourced by hack/local-up.sh --kube (not run by itself): etcd and an
# upstream kube-apiserver in the hub namespace, nmstate-apiserver behind it
# as an aggregated API server, wired as in a cluster (docs/local-up.md,
# "Behind a real kube-apiserver"). Uses local-up.sh's variables (state_dir,
# hub, hub_address, api_port, apiserver) and functions (record, forward,
# wait_for); sets forward_port, node_server and kube_version, and defines
# kube_node, which local-up.sh calls for each node.

kube_apiserver=${KUBE_APISERVER:-}
if [[ -z $kube_apiserver ]]; then
  kube_apiserver=$(bash hack/build-kube-apiserver.sh) ||
    { echo "local-up: --kube needs kube-apiserver; hack/build-kube-apiserver.sh failed" >&2; exit 1; }
fi
kube_version=$("$kube_apiserver" --version | awk '{print $2}')
etcd=$(bash hack/build-etcd.sh) ||
  { echo "local-up: --kube needs etcd; hack/build-etcd.sh failed" >&2; exit 1; }
kube_controller_manager=$(dirname "$kube_apiserver")/kube-controller-manager
[[ -x $kube_controller_manager ]] ||
  { echo "local-up: no kube-controller-manager beside $kube_apiserver (hack/build-kube-apiserver.sh builds both)" >&2; exit 1; }
kube_port=6444 # kube-apiserver in the hub (nmstate-apiserver has 6443)
pki=$state_dir/pki
# Every run starts a fresh cluster: new CAs, an empty etcd and store.
rm -rf "$pki" "$state_dir/etcd" "$state_dir/apiserver-kube" "$state_dir/kubectl-cache"
mkdir -p "$pki"

# ---- PKI (openssl, EC P-256 keys)
# ca NAME CN
ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 365 \
    -subj "/CN=$2" -keyout "$pki/$1.key" -out "$pki/$1.crt" 2>/dev/null
}
# leaf NAME CA SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
leaf() {
  local ext="keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=$4\n"
  [[ -n ${5:-} ]] && ext+="subjectAltName=$5\n"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "$3" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.crt" -CAkey "$pki/$2.key" -CAcreateserial \
    -days 365 -extfile <(printf '%b' "$ext") -out "$pki/$1.crt" 2>/dev/null
  rm -f "$pki/$1.csr"
}
ca ca local-up-cluster-ca             # kube-apiserver's serving and client certificates
ca front-proxy-ca local-up-front-proxy-ca # the aggregator's client certificate
ca nmstate-ca local-up-nmstate-ca     # nmstate-apiserver's serving certificate (APIService caBundle)
leaf kube-apiserver ca /CN=kube-apiserver serverAuth \
  "IP:$hub_address,IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
leaf admin ca "/O=system:masters/CN=local-up-admin" clientAuth
leaf kube-controller-manager ca /CN=system:kube-controller-manager clientAuth
leaf front-proxy-client front-proxy-ca /CN=front-proxy-client clientAuth
leaf nmstate-apiserver nmstate-ca /CN=nmstate-apiserver.nmstate.svc serverAuth \
  "DNS:nmstate-apiserver.nmstate.svc,DNS:nmstate-apiserver.nmstate.svc.cluster.local,IP:$hub_address"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null
openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
chmod 600 "$pki"/*.key

# ---- etcd, on the hub's own loopback
ip netns exec "$hub" "$etcd" --name local-up --data-dir "$state_dir/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster local-up=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  >"$state_dir/logs/etcd.log" 2>&1 </dev/null &
record etcd $! etcd
echo "local-up: waiting for etcd"
etcd_healthy() { ip netns exec "$hub" curl -sf http://127.0.0.1:2379/health | grep -q '"health":"true"'; }
wait_for etcd etcd 30 etcd_healthy

# ---- kube-apiserver, on every address of the hub (its 127.0.0.1 for
# nmstate-apiserver's reviews, the hub address for the nodes and the forward)
ip netns exec "$hub" "$kube_apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port="$kube_port" --advertise-address="$hub_address" \
  --endpoint-reconciler-type=none \
  --tls-cert-file="$pki/kube-apiserver.crt" --tls-private-key-file="$pki/kube-apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC \
  --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --profiling=false \
  >"$state_dir/logs/kube-apiserver.log" 2>&1 </dev/null &
record kube-apiserver $! kube-apiserver
forward_port=$(forward forward "$kube_port")
node_server=https://$hub_address:$kube_port

# The admin kubeconfig names kube-apiserver through the forward.
admin=$state_dir/admin.kubeconfig
rm -f "$admin"
kubectl config --kubeconfig "$admin" set-cluster local-up --server "https://127.0.0.1:$forward_port" \
  --certificate-authority "$pki/ca.crt" --embed-certs=true >/dev/null
kubectl config --kubeconfig "$admin" set-credentials local-up-admin \
  --client-certificate "$pki/admin.crt" --client-key "$pki/admin.key" --embed-certs=true >/dev/null
kubectl config --kubeconfig "$admin" set-context local-up --cluster local-up --user local-up-admin >/dev/null
kubectl config --kubeconfig "$admin" use-context local-up >/dev/null
chmod 600 "$admin"
k() { kubectl --kubeconfig "$admin" --cache-dir "$state_dir/kubectl-cache" "$@"; }

echo "local-up: waiting for kube-apiserver $kube_version"
kube_ready() { [[ $(k get --raw /readyz 2>/dev/null) == ok ]]; }
wait_for kube-apiserver kube-apiserver 180 kube_ready
# It publishes the client CA and the front-proxy settings for extension
# servers a moment after it is ready.
front_proxy_published() {
  [[ -n $(k get configmap -n kube-system extension-apiserver-authentication \
    -o jsonpath='{.data.requestheader-client-ca-file}' 2>/dev/null) ]]
}
wait_for "the extension-apiserver-authentication ConfigMap" kube-apiserver 60 front_proxy_published

# ---- kube-controller-manager, only its ClusterRole aggregation controller:
# it copies deploy/'s nmstate:view/edit/admin rules into view/edit/admin.
# (Its other controllers would manage Pods, Nodes and Endpoints that have
# no kubelet or pods behind them here.)
kcm_kubeconfig=$state_dir/kubeconfigs/kube-controller-manager.kubeconfig
rm -f "$kcm_kubeconfig"
kubectl config --kubeconfig "$kcm_kubeconfig" set-cluster local-up --server "https://127.0.0.1:$kube_port" \
  --certificate-authority "$pki/ca.crt" --embed-certs=true >/dev/null
kubectl config --kubeconfig "$kcm_kubeconfig" set-credentials kube-controller-manager \
  --client-certificate "$pki/kube-controller-manager.crt" --client-key "$pki/kube-controller-manager.key" --embed-certs=true >/dev/null
kubectl config --kubeconfig "$kcm_kubeconfig" set-context local-up --cluster local-up --user kube-controller-manager >/dev/null
kubectl config --kubeconfig "$kcm_kubeconfig" use-context local-up >/dev/null
ip netns exec "$hub" "$kube_controller_manager" \
  --kubeconfig "$kcm_kubeconfig" \
  --controllers=clusterrole-aggregation-controller \
  --use-service-account-credentials=true \
  --leader-elect=false --bind-address=127.0.0.1 \
  >"$state_dir/logs/kube-controller-manager.log" 2>&1 </dev/null &
record kube-controller-manager $! kube-controller-manager

# ---- what deploy/ installs for the aggregated server, from deploy/ itself
# (the Deployment, DaemonSet and etcd are processes here instead of pods).
k apply -f deploy/base/namespace.yaml -f deploy/base/apiserver/rbac.yaml \
  -f deploy/base/apiserver/service.yaml -f deploy/base/apiserver/apiservice.yaml \
  -f deploy/base/apiserver/aggregate-roles.yaml -f deploy/base/agent/rbac.yaml >/dev/null
ca_bundle=$(base64 -w0 <"$pki/nmstate-ca.crt")
for version in v1 v1beta1; do
  k patch apiservice "$version.nmstate.io" --type merge -p "{\"spec\":{\"caBundle\":\"$ca_bundle\"}}" >/dev/null
done
# The Service selects pods that do not exist here, and without
# kube-controller-manager nothing would make endpoints anyway: write both
# kinds by hand (the aggregator reads EndpointSlices since 1.33, Endpoints
# before). Loopback is refused by validation; the hub address is not.
k apply -f - >/dev/null 2>&1 <<EOS
apiVersion: v1
kind: Endpoints
metadata: {name: nmstate-apiserver, namespace: nmstate}
subsets:
  - addresses: [{ip: "$hub_address"}]
    ports: [{name: https, port: $api_port, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: nmstate-apiserver-local-up
  namespace: nmstate
  labels:
    kubernetes.io/service-name: nmstate-apiserver
    endpointslice.kubernetes.io/managed-by: local-up.nmstate.io
addressType: IPv4
endpoints:
  - addresses: ["$hub_address"]
    conditions: {ready: true}
ports: [{name: https, port: $api_port, protocol: TCP}]
EOS

# token_kubeconfig FILE SERVER TOKEN
token_kubeconfig() {
  rm -f "$1"
  kubectl config --kubeconfig "$1" set-cluster local-up --server "$2" \
    --certificate-authority "$pki/ca.crt" --embed-certs=true >/dev/null
  kubectl config --kubeconfig "$1" set-credentials token --token "$3" >/dev/null
  kubectl config --kubeconfig "$1" set-context local-up --cluster local-up --user token >/dev/null
  kubectl config --kubeconfig "$1" use-context local-up >/dev/null
  chmod 600 "$1"
}

# ---- nmstate-apiserver: its identity is the ServiceAccount deploy/ makes;
# client CA and front-proxy settings come from the ConfigMap.
server_token=$(k create token nmstate-apiserver -n nmstate --duration=720h)
token_kubeconfig "$state_dir/kubeconfigs/nmstate-apiserver.kubeconfig" "https://127.0.0.1:$kube_port" "$server_token"
ip netns exec "$hub" "$apiserver" \
  --data-dir "$state_dir/apiserver-kube" \
  --bind-address "$hub_address" --secure-port "$api_port" \
  --tls-cert-file "$pki/nmstate-apiserver.crt" --tls-private-key-file "$pki/nmstate-apiserver.key" \
  --authentication-kubeconfig "$state_dir/kubeconfigs/nmstate-apiserver.kubeconfig" \
  --authorization-kubeconfig "$state_dir/kubeconfigs/nmstate-apiserver.kubeconfig" \
  --default-bridge-vlan-filtering=false \
  >"$state_dir/logs/apiserver.log" 2>&1 </dev/null &
record apiserver $! nmstate-apiserver
echo "local-up: waiting for the APIServices to become Available"
apiservices_available() {
  k wait --for=condition=Available apiservice/v1.nmstate.io apiservice/v1beta1.nmstate.io --timeout=2s
}
wait_for "the nmstate.io APIServices" apiserver 120 apiservices_available

# kube_node NODE LABELS SERVER KUBECONFIG: the Node object with LABELS
# (k=v,...), a Pod of the agent's ServiceAccount on it, and a kubeconfig for
# SERVER with a token bound to that Pod: kube-apiserver then vouches for the
# node (extra authentication.kubernetes.io/node-name) on every request.
kube_node() {
  local node=$1 labels=$2 server=$3 kubeconfig=$4 token
  k apply -f - >/dev/null <<EOS
apiVersion: v1
kind: Node
metadata: {name: $node}
---
apiVersion: v1
kind: Pod
metadata: {name: nmstate-agent-$node, namespace: nmstate, labels: {app.kubernetes.io/name: nmstate-agent}}
spec:
  nodeName: $node
  serviceAccountName: nmstate-agent
  containers: [{name: agent, image: nmstate-agent}]
EOS
  k label node "$node" --overwrite ${labels//,/ } >/dev/null
  token=$(k create token nmstate-agent -n nmstate --bound-object-kind Pod \
    --bound-object-name "nmstate-agent-$node" --duration=720h)
  token_kubeconfig "$kubeconfig" "$server" "$token"
}
