//! The connection string an instance is deployed with:
//! `ConnectedRegistryName=<n>;SyncTokenName=<t>;SyncTokenPassword=<p>;ParentGatewayEndpoint=<host[:port]>;ParentEndpointProtocol=<http|https>`,
//! and `;ParentDataEndpoint=<host[:port]>` when the parent offloads blob downloads to a
//! dedicated data endpoint.

use std::fmt;

/// A parsed connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The connected registry this instance runs.
    pub registry: String,
    /// Its sync token's name.
    pub sync_token: String,
    /// Its sync token's password.
    pub password: String,
    /// The parent's gateway, `host[:port]`.
    pub parent_endpoint: String,
    /// `http` or `https`.
    pub protocol: String,
    /// The parent's data endpoint, `host[:port]`: the one other host blob downloads may be
    /// redirected to.
    pub data_endpoint: Option<String>,
    /// PEM certificates to trust for the parent (and its data endpoint) beside the system's
    /// store, for a parent whose certificate comes from a private CA. Not part of the string:
    /// set from configuration.
    pub parent_ca: Option<Vec<u8>>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("registry", &self.registry)
            .field("sync_token", &self.sync_token)
            .field("password", &"<redacted>")
            .field("parent_endpoint", &self.parent_endpoint)
            .field("protocol", &self.protocol)
            .field("data_endpoint", &self.data_endpoint)
            .field("parent_ca", &self.parent_ca.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

/// Why a connection string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// A `key=value` pair without `=`.
    #[error("connection string part `{0}` is not of the form Key=Value")]
    Malformed(String),
    /// A required key is missing.
    #[error(
        "the connection string has no `{0}`; run `berth connected-registry get-settings` on the root to get a complete one"
    )]
    Missing(&'static str),
    /// The password is the placeholder `get-settings` prints without `--generate-password`.
    #[error(
        "the connection string has no sync token password; run `berth connected-registry get-settings --generate-password 1` on the root"
    )]
    NoPassword,
    /// The protocol is neither http nor https.
    #[error("ParentEndpointProtocol `{0}` is invalid; use http or https")]
    Protocol(String),
    /// An endpoint is not `host[:port]`.
    #[error("{0}")]
    Endpoint(String),
}

impl ConnectionString {
    /// Parses a connection string: split on `;`, then on the first `=` only (values may
    /// contain `=`). Keys are case-insensitive; unknown keys are ignored.
    pub fn parse(text: &str) -> Result<Self, ConnectionStringError> {
        let (mut registry, mut token, mut password, mut endpoint, mut protocol) =
            (None, None, None, None, None);
        let mut data_endpoint = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::Malformed(part.to_owned()))?;
            let value = Some(value.trim().to_owned());
            match key.trim().to_ascii_lowercase().as_str() {
                "connectedregistryname" => registry = value,
                "synctokenname" => token = value,
                "synctokenpassword" => password = value,
                "parentgatewayendpoint" => endpoint = value,
                "parentendpointprotocol" => protocol = value,
                "parentdataendpoint" => data_endpoint = value.filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        let password = password.ok_or(ConnectionStringError::Missing("SyncTokenPassword"))?;
        if password.starts_with('<') {
            return Err(ConnectionStringError::NoPassword);
        }
        let protocol = protocol
            .unwrap_or_else(|| "https".into())
            .to_ascii_lowercase();
        if protocol != "http" && protocol != "https" {
            return Err(ConnectionStringError::Protocol(protocol));
        }
        let endpoint = endpoint.ok_or(ConnectionStringError::Missing("ParentGatewayEndpoint"))?;
        check_endpoint("ParentGatewayEndpoint", &endpoint)?;
        if let Some(data) = &data_endpoint {
            check_endpoint("ParentDataEndpoint", data)?;
        }
        Ok(ConnectionString {
            registry: registry.ok_or(ConnectionStringError::Missing("ConnectedRegistryName"))?,
            sync_token: token.ok_or(ConnectionStringError::Missing("SyncTokenName"))?,
            password,
            parent_endpoint: endpoint,
            protocol,
            data_endpoint,
            parent_ca: None,
        })
    }

    /// Sets the parent's gateway endpoint (`--parent-gateway-endpoint`), which must be
    /// `host[:port]`.
    pub fn set_parent_endpoint(&mut self, endpoint: String) -> Result<(), ConnectionStringError> {
        check_endpoint("--parent-gateway-endpoint", &endpoint)?;
        self.parent_endpoint = endpoint;
        Ok(())
    }

    /// The parent's base URL.
    pub fn parent_url(&self) -> String {
        format!(
            "{}://{}",
            self.protocol,
            self.parent_endpoint.trim_end_matches('/')
        )
    }
}

/// Refuses an endpoint that is not `host[:port]` (a trailing `/` is tolerated), so that an
/// instance never starts only to fail every request to its parent.
fn check_endpoint(what: &str, value: &str) -> Result<(), ConnectionStringError> {
    let value = value.trim_end_matches('/');
    berth_oci::endpoint::check(value).map_err(|why| {
        ConnectionStringError::Endpoint(format!(
            "{what} `{value}` is not a host[:port]: {why}; write it like registry.example.com, \
             10.0.0.5:5000 or [fd00::5]:5000"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_keeps_equals_in_values() {
        let c = ConnectionString::parse(
            "ConnectedRegistryName=factory;SyncTokenName=factory-sync-token;SyncTokenPassword=a=b==;\
             ParentGatewayEndpoint=10.0.0.1:5000;ParentEndpointProtocol=http",
        )
        .unwrap();
        assert_eq!(c.registry, "factory");
        assert_eq!(c.password, "a=b==");
        assert_eq!(c.parent_url(), "http://10.0.0.1:5000");
        assert_eq!(c.data_endpoint, None);
        let with_data = ConnectionString::parse(
            "ConnectedRegistryName=f;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=r:1;ParentDataEndpoint=data.r:443",
        )
        .unwrap();
        assert_eq!(with_data.data_endpoint.as_deref(), Some("data.r:443"));
        assert!(
            !format!("{c:?}").contains("a=b=="),
            "the password is never printed"
        );
    }

    #[test]
    fn clear_errors() {
        assert_eq!(
            ConnectionString::parse("ConnectedRegistryName=x"),
            Err(ConnectionStringError::Missing("SyncTokenPassword"))
        );
        assert_eq!(
            ConnectionString::parse("garbage"),
            Err(ConnectionStringError::Malformed("garbage".into()))
        );
        let placeholder = "ConnectedRegistryName=x;SyncTokenName=t;SyncTokenPassword=<run get-settings>;ParentGatewayEndpoint=h";
        assert_eq!(
            ConnectionString::parse(placeholder),
            Err(ConnectionStringError::NoPassword)
        );
        let ftp = "ConnectedRegistryName=x;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=h;ParentEndpointProtocol=ftp";
        assert_eq!(
            ConnectionString::parse(ftp),
            Err(ConnectionStringError::Protocol("ftp".into()))
        );
        let base = "ConnectedRegistryName=x;SyncTokenName=t;SyncTokenPassword=p;ParentEndpointProtocol=http";
        for endpoint in [
            "ParentGatewayEndpoint=<address of connected registry f: start it, then run get-settings again>",
            "ParentGatewayEndpoint=http://root:5000",
            "ParentGatewayEndpoint=root:5000;ParentDataEndpoint=data root",
        ] {
            let e = ConnectionString::parse(&format!("{base};{endpoint}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a host[:port]"), "{e}");
        }
        let mut c =
            ConnectionString::parse(&format!("{base};ParentGatewayEndpoint=root:5000/")).unwrap();
        assert!(c.set_parent_endpoint("a b".into()).is_err());
        c.set_parent_endpoint("[fd00::1]:5000".into()).unwrap();
        assert_eq!(c.parent_url(), "http://[fd00::1]:5000");
    }
}
