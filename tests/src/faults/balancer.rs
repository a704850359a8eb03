//! A TCP load balancer in front of the apiserver replicas, as a
//! Kubernetes Service would be: each new connection goes to the next
//! replica that accepts it; a replica that dies takes its connections
//! with it, and clients reconnect through the balancer to another one.
//!
//! It listens on host loopback and, optionally, on an address inside a
//! network namespace (the hub of the namespace nodes), so that agents in
//! namespace nodes reach the replicas through their own link to the hub.
//! The namespace listener is made by a thread that enters the namespace
//! only to create the socket; everything else stays in the host's
//! namespace.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::{Context, Result};
use tokio::{net::TcpListener, net::TcpStream, task::JoinHandle};

/// The balancer: its listeners and the replicas it forwards to.
#[derive(Debug)]
pub struct Balancer {
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    loopback: SocketAddr,
    namespace: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Balancer {
    /// Listens on a free loopback port and, when `namespace` is given as
    /// (`/run/netns/NAME`, address), on a free port of that address inside
    /// that network namespace.
    pub async fn start(namespace: Option<(&Path, &str)>) -> Result<Self> {
        let backends = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let loopback = TcpListener::bind("127.0.0.1:0").await?;
        let loopback_address = loopback.local_addr()?;
        let mut tasks = vec![tokio::spawn(serve(
            loopback,
            backends.clone(),
            next.clone(),
        ))];
        let mut namespace_address = None;
        if let Some((netns, address)) = namespace {
            let listener = bind_in_namespace(netns, address)?;
            namespace_address = Some(listener.local_addr()?);
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            tasks.push(tokio::spawn(serve(listener, backends.clone(), next)));
        }
        Ok(Self {
            backends,
            loopback: loopback_address,
            namespace: namespace_address,
            tasks,
        })
    }

    /// The loopback address.
    pub fn loopback(&self) -> SocketAddr {
        self.loopback
    }

    /// The address inside the namespace, if it listens there.
    pub fn namespace(&self) -> Option<SocketAddr> {
        self.namespace
    }

    /// Replaces the replicas new connections go to.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        *self.backends.lock().unwrap_or_else(|e| e.into_inner()) = backends;
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds `address:0` inside the network namespace `netns` from a thread of
/// its own, which enters the namespace, creates the socket and ends: the
/// socket stays in that namespace, the process does not.
fn bind_in_namespace(netns: &Path, address: &str) -> Result<StdListener> {
    let netns = netns.to_path_buf();
    let address = format!("{address}:0");
    std::thread::spawn(move || -> Result<StdListener> {
        let file =
            std::fs::File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {}", netns.display()))?;
        StdListener::bind(&address).with_context(|| format!("binding {address}"))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

async fn serve(
    listener: TcpListener,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    next: Arc<AtomicUsize>,
) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let backends = backends.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // The next replica that accepts; a dead one refuses at once.
            for i in 0..backends.len() {
                let backend = backends[(start + i) % backends.len()];
                if let Ok(mut server) = TcpStream::connect(backend).await {
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
            }
        });
    }
}
