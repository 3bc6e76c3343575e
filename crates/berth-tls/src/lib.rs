//! TLS set-up that every part of Berth shares, server or client: the registry's listeners,
//! a connected registry's link to its parent, the `berth` command line.
//!
//! Berth's TLS is rustls on ring (not aws-lc-rs: no C build, a smaller binary; see
//! ARCHITECTURE.md). reqwest is built without a provider of its own, so the process needs a
//! default provider before any HTTP client is built: [`install_crypto_provider`] makes ring
//! that provider. This crate is the one place that knows it, so the sync crate and the CLI
//! need not depend on the HTTP server for it.

/// Makes ring, the cryptography Berth's TLS is built on, the process's default provider:
/// HTTP clients (the CLI, a connected registry's link to its parent) need one before they
/// are built. Idempotent; call it first thing.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is all this asks.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_twice_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
