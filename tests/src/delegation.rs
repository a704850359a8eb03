//! A real kube-apiserver set up as the cluster an aggregated
//! nmstate-apiserver delegates to: its `kube-system/extension-apiserver-authentication`
//! ConfigMap (written by kube-apiserver itself from its flags),
//! TokenReview, SubjectAccessReview with RBAC, and service-account tokens
//! bound to Pods, Secrets and Nodes — no double. What the server asked, and
//! with which credential, is read from kube-apiserver's audit log.
//!
//! The cluster has deploy/'s namespace and ServiceAccounts with their RBAC
//! (`nmstate-apiserver` may review tokens and access and read the
//! ConfigMap), a Node `a` with an agent Pod on it, and a user `jane` (group
//! `dev`, static token [`JANE_TOKEN`]) who may get and list policies and
//! nothing else.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::{
    etcd::EtcdProcess,
    kube_apiserver::{AuditEvent, KubeApiserverProcess, KubeOptions, StaticToken},
    kubectl::Kubectl,
    pki::TestCa,
};

/// The server's identity: deploy/'s ServiceAccount.
pub const SERVER_ACCOUNT: &str = "system:serviceaccount:nmstate:nmstate-apiserver";
/// Jane's bearer token (kube-apiserver's `--token-auth-file`).
pub const JANE_TOKEN: &str = "jane-token";
/// The Node with an agent Pod.
pub const NODE: &str = "a";
/// TokenReview's resource.
pub const TOKEN_REVIEWS: &str = "tokenreviews";
/// SubjectAccessReview's resource.
pub const ACCESS_REVIEWS: &str = "subjectaccessreviews";
/// The authentication ConfigMap's path.
pub const CONFIGMAP: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";

/// What the cluster has besides deploy/'s objects.
const OBJECTS: &str = "apiVersion: v1
kind: Node
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: nmstate-agent-a, namespace: nmstate}
spec:
  nodeName: a
  serviceAccountName: nmstate-agent
  containers: [{name: agent, image: nmstate-agent}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: policy-reader}
rules:
  - apiGroups: [nmstate.io]
    resources: [nodenetworkconfigurationpolicies]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: jane-reads-policies}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: policy-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]
";

/// etcd and kube-apiserver, stopped on drop.
#[derive(Debug)]
pub struct DelegatedCluster {
    // Dropped in this order: kube-apiserver before its etcd.
    kube: KubeApiserverProcess,
    kubectl: Kubectl,
    _etcd: EtcdProcess,
}

impl DelegatedCluster {
    /// Starts the cluster; with `front_proxy_ca` kube-apiserver is also a
    /// front proxy whose header names start with `requestheader_prefix`
    /// (`X-Remote` when `None`).
    pub async fn start(
        front_proxy_ca: Option<&TestCa>,
        requestheader_prefix: Option<&str>,
    ) -> Result<Self> {
        let etcd = EtcdProcess::try_start(false).await?;
        let kube = KubeApiserverProcess::start(&KubeOptions {
            etcd_servers: etcd.endpoint(),
            front_proxy_ca,
            requestheader_prefix,
            audit: true,
            static_tokens: vec![StaticToken {
                token: JANE_TOKEN.to_owned(),
                user: "jane".to_owned(),
                groups: vec!["dev".to_owned()],
            }],
            ..KubeOptions::default()
        })
        .await?;
        let kubectl = Kubectl::new(&kube.admin_kubeconfig())?;
        let cluster = DelegatedCluster {
            kube,
            kubectl,
            _etcd: etcd,
        };
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base");
        let mut apply = vec!["apply".to_owned()];
        for file in ["namespace.yaml", "apiserver/rbac.yaml", "agent/rbac.yaml"] {
            apply.extend(["-f".to_owned(), deploy.join(file).display().to_string()]);
        }
        cluster
            .kubectl(&apply.iter().map(String::as_str).collect::<Vec<_>>(), None)
            .await?;
        cluster
            .kubectl(&["apply", "-f", "-"], Some(OBJECTS))
            .await?;
        Ok(cluster)
    }

    /// kube-apiserver.
    pub fn kube(&self) -> &KubeApiserverProcess {
        &self.kube
    }

    /// Runs the admin's kubectl; its standard output, or an error with
    /// what it printed.
    async fn kubectl(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let output = match input {
            Some(input) => self.kubectl.run_stdin(args, input).await,
            None => self.kubectl.run(args).await,
        };
        if !output.success() {
            bail!("kubectl {}: {output}", args.join(" "));
        }
        Ok(output.stdout)
    }

    /// A token of ServiceAccount `nmstate/<account>`, bound to `bound`
    /// (`(kind, name)` of a Pod or Secret in `nmstate`, or a Node) when
    /// given: deleting that object revokes the token.
    pub async fn token(&self, account: &str, bound: Option<(&str, &str)>) -> Result<String> {
        let mut args = vec!["create", "token", account, "-n", "nmstate"];
        if let Some((kind, name)) = bound {
            args.extend(["--bound-object-kind", kind, "--bound-object-name", name]);
        }
        Ok(self.kubectl(&args, None).await?.trim().to_owned())
    }

    /// A token of the agent's ServiceAccount bound to the agent's Pod on
    /// [`NODE`]: kube-apiserver vouches for the node in its TokenReview
    /// (extra `authentication.kubernetes.io/node-name`).
    pub async fn node_token(&self) -> Result<String> {
        self.token("nmstate-agent", Some(("Pod", "nmstate-agent-a")))
            .await
    }

    /// A token of the server's ServiceAccount bound to a new Secret
    /// `nmstate/<secret>`: [`delete_secret`](Self::delete_secret) revokes it,
    /// as when the kubelet's token expires.
    pub async fn revocable_server_token(&self, secret: &str) -> Result<String> {
        self.kubectl(
            &["create", "secret", "generic", secret, "-n", "nmstate"],
            None,
        )
        .await?;
        self.token("nmstate-apiserver", Some(("Secret", secret)))
            .await
    }

    /// Deletes Secret `nmstate/<name>`, revoking the tokens bound to it.
    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        self.kubectl(&["delete", "secret", name, "-n", "nmstate"], None)
            .await
            .map(drop)
    }

    /// Every request the server's ServiceAccount made for `resource` so far.
    pub async fn server_calls(&self, resource: &str) -> Result<Vec<AuditEvent>> {
        let mut events = self.kube.audit_events().await?;
        events.retain(|event| event.user == SERVER_ACCOUNT && event.resource == resource);
        Ok(events)
    }

    /// Every request the server's ServiceAccount made so far.
    pub async fn all_server_calls(&self) -> Result<Vec<AuditEvent>> {
        let mut events = self.kube.audit_events().await?;
        events.retain(|event| event.user == SERVER_ACCOUNT);
        Ok(events)
    }

    /// A kubeconfig `dir/name` for kube-apiserver with `user` (a kubeconfig
    /// `user` object, e.g. `{"token": ...}` or `{"tokenFile": ...}`; relative
    /// file names are relative to `dir`), trusting kube-apiserver's
    /// certificate from `dir/ca.crt`, which it writes too.
    pub fn kubeconfig(&self, dir: &Path, name: &str, user: Value) -> Result<PathBuf> {
        std::fs::write(dir.join("ca.crt"), self.kube.serving_ca_pem())?;
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": format!("https://{}", self.kube.address()),
                "certificate-authority": "ca.crt",
            }}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        });
        let path = dir.join(name);
        std::fs::write(&path, kubeconfig.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A kubeconfig `dir/name` with a new token of the server's
    /// ServiceAccount (see [`kubeconfig`](Self::kubeconfig)), and the token.
    pub async fn server_kubeconfig(&self, dir: &Path, name: &str) -> Result<(PathBuf, String)> {
        let token = self.token("nmstate-apiserver", None).await?;
        let path = self.kubeconfig(dir, name, json!({ "token": token }))?;
        Ok((path, token))
    }
}

/// The credential id kube-apiserver records for a service-account token:
/// `JTI=` and the token's `jti` claim.
pub fn credential_id(token: &str) -> Result<String> {
    let payload = token
        .split('.')
        .nth(1)
        .context("a service-account token is a JWT")?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let jti = claims["jti"].as_str().context("the token has no jti")?;
    Ok(format!("JTI={jti}"))
}
