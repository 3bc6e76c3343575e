//! A TCP forwarder for end-to-end tests: counts the bytes it carries back from the upstream,
//! and can cut the first connection that carries more than a given number of bytes.

#![allow(dead_code)] // each test binary uses a part

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Forwards every connection on `addr` to an upstream address.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    returned: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port of `ip` and forwards to `upstream`, never cutting.
    pub fn start(ip: IpAddr, upstream: SocketAddr) -> Self {
        Self::cutting(ip, upstream, u64::MAX)
    }

    /// As [`Proxy::start`], but the first connection to carry more than `cut_after` bytes
    /// back from upstream is shut down in both directions, once.
    pub fn cutting(ip: IpAddr, upstream: SocketAddr, cut_after: u64) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let returned = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (returned2, cuts2, stopping) = (returned.clone(), cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                // Refused upstream: dropping the client's connection tells it so.
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut from = client_in;
                    let mut to = server_out;
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) if to.write_all(&buf[..n]).is_err() => break,
                            Ok(_) => {}
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                let (returned, cuts) = (returned2.clone(), cuts2.clone());
                std::thread::spawn(move || back(server, client, cut_after, &returned, &cuts));
            }
        });
        Proxy {
            addr,
            returned,
            cuts,
            stop,
        }
    }

    /// Bytes carried from upstream back to clients so far.
    pub fn returned(&self) -> u64 {
        self.returned.load(Ordering::SeqCst)
    }

    /// How many connections were cut.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Carries upstream's answers back to the client, counting them, cutting once past
/// `cut_after` bytes on one connection.
fn back(
    mut from: TcpStream,
    mut to: TcpStream,
    cut_after: u64,
    returned: &AtomicU64,
    cuts: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut carried = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        carried += n as u64;
        if carried > cut_after
            && cuts
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        returned.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// `len` deterministic bytes from `seed` (xorshift) that do not compress, so a layer is
/// about as big on the wire as on disk.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    let mut x = seed;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
