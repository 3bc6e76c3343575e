//! Registry endpoints as connection strings and pull secrets name them: `host[:port]`.
//!
//! Plain `std`: the connection-string parser (fuzzed on its own) uses it too.

/// Checks `value` is `host[:port]`, where the host is a DNS name, an IPv4 address or an IPv6
/// address in brackets, and the port is 1 to 65535; no scheme, path or space. The error
/// says why not, for a message naming the value.
pub fn check(value: &str) -> Result<(), &'static str> {
    let invalid = |why: &'static str| why;
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing `]`"))?;
            let ip = ip
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("the brackets hold no IPv6 address"))?;
            if ip.is_unspecified() {
                return Err(invalid("`[::]` names no machine"));
            }
            let port = match after {
                "" => None,
                after => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("only `:port` may follow the brackets"))?,
                ),
            };
            (None, port)
        }
        None => match value.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(value), None),
        },
    };
    if let Some(host) = host {
        if value.contains("://") {
            return Err(invalid("give no scheme (the protocol is set apart)"));
        }
        if port.is_some_and(|p| p.contains(':')) {
            return Err(invalid("an IPv6 address goes in brackets"));
        }
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(invalid(
                "the host must be a DNS name or an IP address (letters, digits, `-` and `.`)",
            ));
        }
        if host == "0.0.0.0" {
            return Err(invalid("`0.0.0.0` names no machine"));
        }
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err(invalid("the port must be a number from 1 to 65535"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        for ok in [
            "registry.example.com",
            "10.0.0.5:5000",
            "[fd00::5]:5000",
            "[::1]",
            "a_b:1",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "http://r", "r/x", "r:0", "r:65536", "0.0.0.0", "[::]", "fd00::5", "[::1", "r :1",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
