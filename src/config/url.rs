//! Member URLs as etcd's flags write them: `scheme://host:port`, nothing else.

use std::fmt;

/// Transport of a member URL. `https` means TLS on that listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// A URL a member listens on or advertises: scheme, host (name, IPv4, or bracketed IPv6) and
/// port. Paths, queries and credentials are refused, as etcd refuses them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberUrl {
    pub scheme: Scheme,
    /// Host without brackets, e.g. `localhost`, `10.0.0.1`, `::1`.
    pub host: String,
    pub port: u16,
}

/// Why a URL was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("URL scheme must be http or https (got {url:?})")]
    Scheme { url: String },
    #[error("URL address does not have the form \"host:port\": {url}")]
    HostPort { url: String },
    #[error("URL must not have a path, query or credentials: {url}")]
    Extra { url: String },
}

impl MemberUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(UrlError::Scheme {
                url: url.to_string(),
            });
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(UrlError::Extra {
                url: url.to_string(),
            });
        }
        let host_port_error = || UrlError::HostPort {
            url: url.to_string(),
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(host_port_error)?;
            let port = after.strip_prefix(':').ok_or_else(host_port_error)?;
            (host, port)
        } else {
            let (host, port) = authority.rsplit_once(':').ok_or_else(host_port_error)?;
            if host.contains(':') {
                // An IPv6 address must be bracketed, or its last group reads as the port.
                return Err(host_port_error());
            }
            (host, port)
        };
        if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(host_port_error());
        }
        let port = port.parse::<u16>().map_err(|_| host_port_error())?;
        Ok(MemberUrl {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` in the form socket APIs take (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for MemberUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}
