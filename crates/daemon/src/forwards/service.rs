//! `ForwardService`: the stored forwards and their listener tasks.
//!
//! One tokio task per forward accepts connections; each connection is a
//! task of that listener's `JoinSet` (so closing the listener ends its
//! connections too) that looks the VM up in the store, dials
//! `<guest_ip>:<guest_port>` and copies both ways. A VM that is not
//! running gets its connections reset (`SO_LINGER` 0) at once; the
//! listener stays open so the host port stays the forward's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use banger_api::VmState;
use banger_api::forward::{DEFAULT_ADDRESS, PortForward, VmForwardParams};
use banger_store::{Store, StoreError};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::forwards::error::ForwardError;
use crate::forwards::lowports::LowPorts;

/// How long dialing the guest may take before the client is reset.
const GUEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pending connections a forward's listener queues.
const BACKLOG: u32 = 128;

/// An open listener: the task that owns the socket.
struct Listener {
    vm_id: String,
    task: JoinHandle<()>,
}

/// The forward service.
pub struct ForwardService {
    store: Arc<Store>,
    /// Open listeners by host address and port (a leaf lock).
    open: Mutex<HashMap<SocketAddr, Listener>>,
    /// Why a stored forward could not be re-opened at daemon start (a
    /// leaf lock).
    failed: Mutex<HashMap<SocketAddr, String>>,
    /// Serialises add, remove, close and restore: a forward added while
    /// its VM is deleted either fails on the store's foreign key or is
    /// closed by the delete, never left listening. Taken after
    /// `VMService.vm_locks[id]` (by delete), before the leaf locks.
    ops: tokio::sync::Mutex<()>,
}

impl ForwardService {
    /// A service over `store` with no listener open (see [`Self::restore`]).
    pub fn new(store: Arc<Store>) -> ForwardService {
        ForwardService {
            store,
            open: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
        }
    }

    /// `vm.forward`: listen on `address:host_port` (127.0.0.1 and a free
    /// port by default) and store the forward.
    pub async fn add(&self, p: &VmForwardParams) -> Result<PortForward, ForwardError> {
        if p.guest_port == 0 {
            return Err(ForwardError::Invalid(
                "guest port 0 is not a port; give the port the guest service listens on (1-65535)"
                    .into(),
            ));
        }
        let address = p.address.unwrap_or(DEFAULT_ADDRESS);
        let wanted = SocketAddr::new(address, p.host_port.unwrap_or(0));
        let low = LowPorts::current();
        if low.refuses(wanted.port()) {
            return Err(ForwardError::Privileged {
                port: wanted.port(),
                start: low.start,
                uid: low.uid,
            });
        }
        let _ops = self.ops.lock().await;
        let vm = self
            .store
            .find_vm(&p.vm)?
            .ok_or_else(|| ForwardError::NoSuchVm(p.vm.clone()))?;
        // Another forward on this port and this address, or on a wildcard
        // address that overlaps it.
        if wanted.port() != 0
            && let Some(taken) = self.store.list_forwards()?.into_iter().find(|f| {
                f.host_port == wanted.port()
                    && (f.address == address
                        || f.address.is_unspecified()
                        || address.is_unspecified())
            })
        {
            return Err(ForwardError::Forwarded {
                endpoint: wanted,
                vm: taken.vm,
                guest_port: taken.guest_port,
            });
        }
        let listener = bind(wanted, low)?;
        let endpoint = listener.local_addr().map_err(|source| ForwardError::Bind {
            endpoint: wanted,
            source,
        })?;
        let forward = PortForward {
            vm_id: vm.id.clone(),
            vm: vm.name.clone(),
            address,
            host_port: endpoint.port(),
            guest_port: p.guest_port,
            created_at: banger_store::now_millis(),
            listening: true,
            error: None,
        };
        self.store.insert_forward(&forward).map_err(|e| match e {
            StoreError::NotFound { .. } => ForwardError::NoSuchVm(p.vm.clone()),
            e => e.into(),
        })?;
        self.spawn(listener, &forward);
        tracing::info!(vm = %vm.name, host = %endpoint, guest_port = p.guest_port, "port forward added");
        Ok(forward)
    }

    /// `vm.forward_remove`: close and forget the VM's forwards to the guest
    /// port (only the one on `host_port`/`address` when given).
    pub async fn remove(&self, p: &VmForwardParams) -> Result<Vec<PortForward>, ForwardError> {
        let _ops = self.ops.lock().await;
        let vm = self
            .store
            .find_vm(&p.vm)?
            .ok_or_else(|| ForwardError::NoSuchVm(p.vm.clone()))?;
        let matching: Vec<PortForward> = self
            .store
            .vm_forwards(&vm.id)?
            .into_iter()
            .filter(|f| {
                f.guest_port == p.guest_port
                    && p.host_port.is_none_or(|h| h == f.host_port)
                    && p.address.is_none_or(|a| a == f.address)
            })
            .collect();
        if matching.is_empty() {
            let mut what = format!("to guest port {}", p.guest_port);
            if let Some(h) = p.host_port {
                let on = SocketAddr::new(p.address.unwrap_or(DEFAULT_ADDRESS), h);
                what = format!("on {on} {what}");
            } else if let Some(a) = p.address {
                what = format!("on {a} {what}");
            }
            return Err(ForwardError::NoSuchForward { vm: vm.name, what });
        }
        for f in &matching {
            self.store.delete_forward(f.address, f.host_port)?;
        }
        let keys: Vec<SocketAddr> = matching
            .iter()
            .map(|f| SocketAddr::new(f.address, f.host_port))
            .collect();
        self.close(|key, _| keys.contains(key)).await;
        tracing::info!(vm = %vm.name, guest_port = p.guest_port, removed = matching.len(), "port forwards removed");
        Ok(matching
            .into_iter()
            .map(|f| PortForward {
                listening: false,
                ..f
            })
            .collect())
    }

    /// `vm.forwards`: a VM's forwards.
    pub fn list(&self, vm: &str) -> Result<Vec<PortForward>, ForwardError> {
        let vm = self
            .store
            .find_vm(vm)?
            .ok_or_else(|| ForwardError::NoSuchVm(vm.to_string()))?;
        Ok(self.of_vm(&vm.id)?)
    }

    /// The forwards of the VM with this id, with their listeners' state
    /// (for `vm.show`).
    pub fn of_vm(&self, vm_id: &str) -> Result<Vec<PortForward>, StoreError> {
        let forwards = self.store.vm_forwards(vm_id)?;
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(forwards
            .into_iter()
            .map(|mut f| {
                let key = SocketAddr::new(f.address, f.host_port);
                f.listening = open.contains_key(&key);
                f.error = failed.get(&key).cloned();
                f
            })
            .collect())
    }

    /// Close the listeners of a deleted VM (its rows went with it). Called
    /// by `vm.delete` under the VM's lock, after the row is gone.
    pub async fn close_vm(&self, vm_id: &str) {
        let _ops = self.ops.lock().await;
        self.close(|_, l| l.vm_id == vm_id).await;
        let remaining: Vec<SocketAddr> = self
            .store
            .list_forwards()
            .unwrap_or_default()
            .iter()
            .map(|f| SocketAddr::new(f.address, f.host_port))
            .collect();
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| remaining.contains(k));
    }

    /// Open the listener of every stored forward that has none (at daemon
    /// start). A forward whose address is taken is kept, reported by
    /// `vm ports` with the reason, and tried again at the next start;
    /// returns how many listeners were opened.
    pub async fn restore(&self) -> Result<usize, StoreError> {
        let _ops = self.ops.lock().await;
        let low = LowPorts::current();
        let mut opened = 0;
        for f in self.store.list_forwards()? {
            let key = SocketAddr::new(f.address, f.host_port);
            if self
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&key)
            {
                continue;
            }
            match bind(key, low) {
                Ok(listener) => {
                    self.spawn(listener, &f);
                    self.failed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    opened += 1;
                }
                Err(e) => {
                    tracing::warn!(vm = %f.vm, host = %key, guest_port = f.guest_port, error = %e, "cannot re-open a port forward; `banger vm ports` shows it as not listening");
                    self.failed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, e.to_string());
                }
            }
        }
        Ok(opened)
    }

    /// Start the listener task of `f` on `listener`.
    fn spawn(&self, listener: TcpListener, f: &PortForward) {
        let key = SocketAddr::new(f.address, f.host_port);
        let task = tokio::spawn(serve(
            listener,
            Arc::clone(&self.store),
            f.vm_id.clone(),
            f.guest_port,
        ));
        let old = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                Listener {
                    vm_id: f.vm_id.clone(),
                    task,
                },
            );
        if let Some(old) = old {
            old.task.abort();
        }
    }

    /// Abort the listeners `pick` selects and wait until their sockets are
    /// closed (the port is free again when this returns).
    async fn close(&self, pick: impl Fn(&SocketAddr, &Listener) -> bool) {
        let closing: Vec<Listener> = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<SocketAddr> = open
                .iter()
                .filter(|(k, l)| pick(k, l))
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for l in closing {
            l.task.abort();
            let _ = l.task.await;
        }
    }
}

impl Drop for ForwardService {
    fn drop(&mut self) {
        for l in self
            .open
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            l.task.abort();
        }
    }
}

/// Listen on `addr` (`SO_REUSEADDR`, so a restarted daemon gets its ports
/// back while old connections linger in `TIME_WAIT`), with the error a
/// user can act on.
fn bind(addr: SocketAddr, low: LowPorts) -> Result<TcpListener, ForwardError> {
    let fail = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AddrInUse => ForwardError::InUse(addr),
        std::io::ErrorKind::AddrNotAvailable => ForwardError::NotLocal(addr.ip()),
        std::io::ErrorKind::PermissionDenied => ForwardError::Privileged {
            port: addr.port(),
            start: low.start,
            uid: low.uid,
        },
        _ => ForwardError::Bind {
            endpoint: addr,
            source,
        },
    };
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)
}

/// A forward's accept loop; its connections live in its `JoinSet`, so
/// aborting this task ends them too.
async fn serve(listener: TcpListener, store: Arc<Store>, vm_id: String, guest_port: u16) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    conns.spawn(relay(client, Arc::clone(&store), vm_id.clone(), guest_port));
                }
                Err(e) => {
                    // Out of descriptors, most often: back off instead of spinning.
                    tracing::warn!(error = %e, "port forward: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection: to the guest if its VM runs, else reset.
async fn relay(mut client: TcpStream, store: Arc<Store>, vm_id: String, guest_port: u16) {
    let guest_ip = match store.get_vm(&vm_id) {
        Ok(Some(vm)) if vm.state == VmState::Running => vm.guest_ip,
        _ => return reset(client),
    };
    // Never through the host's default route (a VM without a network
    // card): only to an address on a link of this namespace.
    if !matches!(
        crate::common::route::reach(guest_ip),
        crate::common::route::Reach::Direct { .. }
    ) {
        tracing::debug!(%guest_ip, "port forward: the guest address is not on a link of this host");
        return reset(client);
    }
    let target = SocketAddr::new(guest_ip.into(), guest_port);
    let mut guest =
        match tokio::time::timeout(GUEST_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%target, error = %e, "port forward: guest refused");
                return reset(client);
            }
            Err(_) => {
                tracing::debug!(%target, "port forward: guest did not answer");
                return reset(client);
            }
        };
    let _ = client.set_nodelay(true);
    let _ = guest.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut guest).await {
        tracing::debug!(%target, error = %e, "port forward: connection ended");
    }
}

/// Close `client` with a reset, so the peer sees "connection reset" at once
/// instead of an orderly end of a stream that never began.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}
