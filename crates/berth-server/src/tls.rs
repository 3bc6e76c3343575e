//! TLS for a listener: a certificate chain and private key read from PEM files, reloaded
//! without a restart.
//!
//! [`ReloadingCert::load`] reads the files once (an error there should stop the start);
//! [`ReloadingCert::acceptor`] gives a [`TlsAcceptor`] whose configuration asks the
//! [`ReloadingCert`] for the certificate at every handshake, so a reload affects new
//! handshakes only: connections already open keep the certificate they were set up with.
//! [`ReloadingCert::spawn_reloader`] reloads when either file changes on disk or the process
//! gets `SIGHUP`. A reload that fails (a half-written file, a key that does not match the
//! certificate yet) is logged and the previous certificate stays in service.

use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsAcceptor;

/// Makes ring the process's cryptography provider (see [`berth_tls`]).
pub use berth_tls::install_crypto_provider;

/// A certificate chain and private key, read from PEM files, served by one listener and
/// reloaded when the files change or on SIGHUP.
///
/// Both may name the same file. The certificate file holds the end-entity certificate first,
/// then any intermediates; the key file holds an unencrypted PKCS#8 (`PRIVATE KEY`),
/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM file with the certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// The PEM file with the private key of the end-entity certificate.
    pub key: PathBuf,
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be opened or read.
    #[error("cannot read TLS file `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("malformed PEM in TLS file `{}`: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate (`BEGIN CERTIFICATE` block) found in `{}`", path.display())]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file holds no unencrypted private key.
    #[error(
        "no private key found in `{}`: expected an unencrypted `PRIVATE KEY`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` PEM block",
        path.display()
    )]
    NoPrivateKey {
        /// The key file.
        path: PathBuf,
    },
    /// The private key is of a type or size that cannot be used for signing.
    #[error("unsupported private key in `{}`: {source}", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The end-entity certificate cannot be parsed.
    #[error("invalid certificate in `{}`: {source}", path.display())]
    InvalidCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The private key is not the one of the end-entity certificate.
    #[error(
        "the private key in `{}` does not match the certificate in `{}`",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The TLS configuration could not be built.
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Holds the current certificate; cloneable handle (Arc inside).
///
/// Clones share the certificate: a reload through one is seen by every acceptor made from any.
#[derive(Clone)]
pub struct ReloadingCert {
    inner: Arc<Inner>,
}

struct Inner {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    /// The certificate handed to new handshakes; shared with the [`CurrentCert`] resolver.
    current: Arc<RwLock<Arc<CertifiedKey>>>,
    config: Arc<ServerConfig>,
    /// What the files looked like just before they were last read. Locked for the whole of a
    /// reload, so reloads do not interleave.
    loaded: Mutex<Stamp>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Reads the files now; an error here stops the start (clear message with the path).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = Stamp::of(&files);
        let (key, _) = read_certified_key(&files, &provider)?;
        let current = Arc::new(RwLock::new(Arc::new(key)));
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(CurrentCert {
                current: Arc::clone(&current),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ReloadingCert {
            inner: Arc::new(Inner {
                files,
                provider,
                current,
                config: Arc::new(config),
                loaded: Mutex::new(loaded),
            }),
        })
    }

    /// Re-reads the files; on error keeps serving the previous certificate and returns the error.
    ///
    /// Returns whether the certificate chain changed (`false` when the files hold what is
    /// already served). Blocks on file I/O; from async code, prefer
    /// [`spawn_reloader`](Self::spawn_reloader) or `spawn_blocking`.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let inner = &self.inner;
        let mut loaded = inner.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken before reading, so that a change made while reading is seen by the next poll;
        // kept even on failure, so that a broken file is reported once, not at every poll.
        *loaded = Stamp::of(&inner.files);
        let (key, verified) = read_certified_key(&inner.files, &inner.provider)?;
        let mut current = inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // With a key checked against the certificate, the same chain means the same key pair.
        if verified && current.cert == key.cert {
            return Ok(false);
        }
        *current = Arc::new(key);
        Ok(true)
    }

    /// A tokio-rustls acceptor whose ServerConfig uses a `ResolvesServerCert` that returns the
    /// current certificate (std::sync::RwLock<Arc<rustls::sign::CertifiedKey>> swapped on
    /// reload, so connections already open keep theirs and new handshakes get the new one).
    /// ALPN: "h2" and "http/1.1".
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.inner.config))
    }

    /// Spawns a task that reloads when either file's modification time or length changes
    /// (poll every `poll` interval, e.g. 1 s) and on SIGHUP (tokio::signal::unix), logging
    /// `tracing::info!` on a successful change and `tracing::warn!` on failure (keeping the old
    /// certificate). The task ends when `stop` (a tokio::sync::watch::Receiver<bool>) turns
    /// true or its sender is dropped.
    ///
    /// A change seen on disk is reloaded once the files have stayed the same for one more
    /// poll, so that a certificate and key written one after the other are read together
    /// rather than reported as a mismatch in between. Besides modification time and length,
    /// a file's inode and change time count too, which catches replacement by rename (as
    /// with Kubernetes secret volumes). The `SIGHUP` handler is installed before this returns.
    ///
    /// Must be called from within a tokio runtime.
    pub fn spawn_reloader(&self, poll: Duration, stop: watch::Receiver<bool>) {
        let hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot listen for SIGHUP; the TLS certificate is reloaded on file changes only"
                );
                None
            }
        };
        tokio::spawn(run_reloader(self.clone(), poll, stop, hangup));
    }

    /// One step of the reloader, run off the async threads: returns the new pending stamp.
    fn reloader_step(&self, cause: Cause, pending: Option<Stamp>) -> Option<Stamp> {
        if cause == Cause::Poll {
            let now = Stamp::of(&self.inner.files);
            let loaded = self
                .inner
                .loaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now == *loaded {
                return None;
            }
            drop(loaded);
            if pending.as_ref() != Some(&now) {
                // Changed since last poll: wait until the files hold still.
                return Some(now);
            }
        }
        let files = &self.inner.files;
        let trigger = cause.describe();
        match self.reload() {
            Ok(true) => tracing::info!(
                cert = %files.cert.display(),
                key = %files.key.display(),
                trigger,
                "TLS certificate reloaded"
            ),
            Ok(false) => tracing::debug!(
                cert = %files.cert.display(),
                trigger,
                "TLS certificate unchanged"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                trigger,
                "TLS certificate reload failed; still serving the previous certificate"
            ),
        }
        None
    }
}

/// The shortest poll interval, so that a zero interval does not spin (or panic in tokio).
const MIN_POLL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Poll,
    Signal,
}

impl Cause {
    fn describe(self) -> &'static str {
        match self {
            Cause::Poll => "files changed",
            Cause::Signal => "SIGHUP",
        }
    }
}

async fn run_reloader(
    cert: ReloadingCert,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
    mut hangup: Option<Signal>,
) {
    if *stop.borrow_and_update() {
        return;
    }
    let mut ticker = tokio::time::interval(poll.max(MIN_POLL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = None;
    loop {
        let cause = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() {
                    break;
                }
                continue;
            }
            () = next_hangup(&mut hangup) => Cause::Signal,
            _ = ticker.tick() => Cause::Poll,
        };
        let worker = cert.clone();
        let step = tokio::task::spawn_blocking(move || worker.reloader_step(cause, pending));
        pending = match step.await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate reload task failed");
                None
            }
        };
    }
    tracing::debug!(cert = %cert.inner.files.cert.display(), "TLS certificate reloader stopped");
}

/// Waits for the next `SIGHUP`; never returns when there is no handler.
async fn next_hangup(hangup: &mut Option<Signal>) {
    if let Some(signal) = hangup {
        if signal.recv().await.is_some() {
            return;
        }
        *hangup = None;
    }
    std::future::pending().await
}

/// Gives rustls the current certificate at each handshake.
struct CurrentCert {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
}

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCert").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(&current))
    }
}

/// What a file looked like: `None` when it could not be examined (missing, say).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

/// The stamps of the certificate and the key file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp([Option<FileStamp>; 2]);

impl Stamp {
    fn of(files: &TlsFiles) -> Stamp {
        Stamp([file_stamp(&files.cert), file_stamp(&files.key)])
    }
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    // Follows symbolic links: a swapped link target counts as a change.
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        dev: meta.dev(),
        ino: meta.ino(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// Reads the chain and key and pairs them; the flag says whether the key was checked against
/// the certificate (some key types cannot tell their public key).
fn read_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, bool), TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: files.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok((certified, true)),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok((certified, false)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(source) => Err(TlsError::InvalidCertificate {
            path: files.cert.clone(),
            source,
        }),
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => pem_error(path, other),
    })
}

fn pem_error(path: &Path, error: pem::Error) -> TlsError {
    match error {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rustls::RootCertStore;
    use rustls::client::Resumption;
    use rustls_pki_types::ServerName;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    use super::*;

    /// A test CA in a temporary directory, issuing server certificates with `openssl`.
    struct Pki {
        dir: tempfile::TempDir,
        ca_cert: PathBuf,
        ca_key: PathBuf,
    }

    fn openssl(args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    const EC_ARGS: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let ca_cert = dir.path().join("ca.pem");
            let ca_key = dir.path().join("ca.key");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(EC_ARGS);
            args.extend(["-subj", "/CN=Berth Test CA"]);
            args.extend(["-keyout", ca_key.to_str().unwrap()]);
            args.extend(["-out", ca_cert.to_str().unwrap()]);
            openssl(&args);
            Pki {
                dir,
                ca_cert,
                ca_key,
            }
        }

        /// Issues a certificate for `localhost` and `127.0.0.1`: `<name>.pem` and `<name>.key`.
        fn issue(&self, name: &str) -> TlsFiles {
            let files = TlsFiles {
                cert: self.dir.path().join(format!("{name}.pem")),
                key: self.dir.path().join(format!("{name}.key")),
            };
            let cn = format!("/CN={name}");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(EC_ARGS);
            args.extend(["-subj", &cn]);
            args.extend(["-CA", self.ca_cert.to_str().unwrap()]);
            args.extend(["-CAkey", self.ca_key.to_str().unwrap()]);
            args.extend(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
            args.extend(["-addext", "basicConstraints=critical,CA:FALSE"]);
            args.extend(["-addext", "extendedKeyUsage=serverAuth"]);
            args.extend(["-keyout", files.key.to_str().unwrap()]);
            args.extend(["-out", files.cert.to_str().unwrap()]);
            openssl(&args);
            files
        }

        /// The files a server reads, as opposed to those the CA issued.
        fn served(&self) -> TlsFiles {
            TlsFiles {
                cert: self.dir.path().join("server.pem"),
                key: self.dir.path().join("server.key"),
            }
        }

        fn connector(&self) -> TlsConnector {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(&self.ca_cert).unwrap())
                .unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            // A resumed session would report the certificate of the first handshake.
            config.resumption = Resumption::disabled();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            TlsConnector::from(Arc::new(config))
        }
    }

    /// Copies an issued certificate and key over the served files.
    fn install(from: &TlsFiles, to: &TlsFiles) {
        std::fs::copy(&from.cert, &to.cert).unwrap();
        std::fs::copy(&from.key, &to.key).unwrap();
    }

    fn pem_cert(files: &TlsFiles) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(&files.cert).unwrap()
    }

    fn current(cert: &ReloadingCert) -> CertificateDer<'static> {
        cert.inner.current.read().unwrap().cert[0].clone()
    }

    /// Makes a real handshake against `acceptor` as `server_name`; returns the end-entity
    /// certificate the server presented.
    async fn handshake(
        pki: &Pki,
        acceptor: &TlsAcceptor,
        server_name: &str,
    ) -> CertificateDer<'static> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.expect("server handshake")
        };
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from(server_name.to_owned()).unwrap();
            pki.connector()
                .connect(name, tcp)
                .await
                .expect("client handshake")
        };
        let (_server, client) = tokio::join!(server, client);
        let conn = client.get_ref().1;
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        conn.peer_certificates().expect("server certificate")[0].clone()
    }

    #[test]
    fn load_reads_chain_and_key() {
        let pki = Pki::new();
        let a = pki.issue("a");
        let cert = ReloadingCert::load(a.clone()).unwrap();
        assert_eq!(current(&cert), pem_cert(&a));
        assert!(format!("{cert:?}").contains("a.pem"));
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let pki = Pki::new();
        let a = pki.issue("a");
        let b = pki.issue("b");
        let err = ReloadingCert::load(TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("does not match"), "{msg}");
        assert!(msg.contains(a.cert.to_str().unwrap()), "{msg}");
        assert!(msg.contains(b.key.to_str().unwrap()), "{msg}");
    }

    #[test]
    fn missing_file_is_named() {
        let pki = Pki::new();
        let a = pki.issue("a");
        let missing = pki.dir.path().join("missing.pem");

        let err = ReloadingCert::load(TlsFiles {
            cert: missing.clone(),
            key: a.key.clone(),
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

        let err = ReloadingCert::load(TlsFiles {
            cert: a.cert.clone(),
            key: missing.clone(),
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
    }

    #[test]
    fn files_without_the_expected_blocks_are_refused() {
        let pki = Pki::new();
        let a = pki.issue("a");
        // Swapped: no certificate in the key file, no key in the certificate file.
        let err = ReloadingCert::load(TlsFiles {
            cert: a.key.clone(),
            key: a.key.clone(),
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("a.key"), "{err}");

        let err = ReloadingCert::load(TlsFiles {
            cert: a.cert.clone(),
            key: a.cert.clone(),
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        assert!(err.to_string().contains("a.pem"), "{err}");

        // Both in one file is fine.
        let both = pki.dir.path().join("both.pem");
        let mut pem = std::fs::read(&a.cert).unwrap();
        pem.extend(std::fs::read(&a.key).unwrap());
        std::fs::write(&both, pem).unwrap();
        ReloadingCert::load(TlsFiles {
            cert: both.clone(),
            key: both,
        })
        .unwrap();
    }

    #[tokio::test]
    async fn handshake_serves_the_reloaded_certificate() {
        let pki = Pki::new();
        let a = pki.issue("a");
        let b = pki.issue("b");
        let served = pki.served();
        install(&a, &served);

        let cert = ReloadingCert::load(served.clone()).unwrap();
        let acceptor = cert.acceptor();
        assert_eq!(handshake(&pki, &acceptor, "localhost").await, pem_cert(&a));
        assert_eq!(handshake(&pki, &acceptor, "127.0.0.1").await, pem_cert(&a));
        assert!(!cert.reload().unwrap(), "same files, no change");

        install(&b, &served);
        assert!(cert.reload().unwrap());
        // The acceptor made before the reload serves the new certificate, as does a new one.
        assert_eq!(handshake(&pki, &acceptor, "localhost").await, pem_cert(&b));
        assert_eq!(
            handshake(&pki, &cert.acceptor(), "localhost").await,
            pem_cert(&b)
        );

        // A broken certificate file: the reload fails, B stays in service.
        std::fs::write(&served.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let err = cert.reload().unwrap_err();
        assert!(err.to_string().contains("server.pem"), "{err}");
        assert_eq!(handshake(&pki, &acceptor, "localhost").await, pem_cert(&b));

        // So does a certificate that does not go with the key.
        std::fs::copy(&a.cert, &served.cert).unwrap();
        let err = cert.reload().unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert_eq!(handshake(&pki, &acceptor, "localhost").await, pem_cert(&b));
    }

    /// Waits up to `within` for the served certificate to become `want`.
    async fn wait_for(cert: &ReloadingCert, want: &CertificateDer<'_>, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while current(cert) != *want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "certificate not reloaded within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the reloader task to drop its handle.
    async fn wait_stopped(cert: &ReloadingCert) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&cert.inner) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reloader did not stop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn reloader_picks_up_file_changes() {
        let pki = Pki::new();
        let a = pki.issue("a");
        let b = pki.issue("b");
        let served = pki.served();
        install(&a, &served);

        let cert = ReloadingCert::load(served.clone()).unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        cert.spawn_reloader(Duration::from_millis(100), stop_rx);

        // Let the clock move past the load's timestamps before rewriting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        install(&b, &served);
        wait_for(&cert, &pem_cert(&b), Duration::from_secs(5)).await;
        assert_eq!(
            handshake(&pki, &cert.acceptor(), "localhost").await,
            pem_cert(&b)
        );

        // A broken key file is reported and B stays; a good one is then picked up.
        std::fs::write(&served.key, "garbage").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(current(&cert), pem_cert(&b));
        install(&a, &served);
        wait_for(&cert, &pem_cert(&a), Duration::from_secs(5)).await;

        stop_tx.send(true).unwrap();
        wait_stopped(&cert).await;
    }

    #[tokio::test]
    async fn reloader_reloads_on_sighup_and_stops_with_its_sender() {
        let pki = Pki::new();
        let a = pki.issue("a");
        let b = pki.issue("b");
        let served = pki.served();
        install(&a, &served);

        let cert = ReloadingCert::load(served.clone()).unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        // Polling too slow to matter: only the signal can bring B in.
        cert.spawn_reloader(Duration::from_secs(3600), stop_rx);
        install(&b, &served);
        // The handler is installed by now, so the signal cannot end the test process.
        let status = Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(&cert, &pem_cert(&b), Duration::from_secs(5)).await;

        drop(stop_tx);
        wait_stopped(&cert).await;
    }
}
