//! Version facts reported to users and clients.
//!
//! Clients gate features on the etcd API version a server reports (etcd 3.5 clients check it
//! before using newer RPCs), so Cairn reports the etcd API version it implements, and its own
//! version beside it wherever the format has room.

/// Cairn's own version, from the workspace manifest.
pub const CAIRN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from ("unknown" outside a git checkout).
pub const GIT_COMMIT: &str = env!("CAIRN_GIT_COMMIT");

/// The etcd server version Cairn presents on the wire (`StatusResponse.version`, `/version`).
pub const ETCD_SERVER_VERSION: &str = "3.5.0";

/// The etcd cluster API version (major.minor), as etcd reports it in `/version`.
pub const ETCD_API_VERSION: &str = "3.5";

/// What `cairn --version` and `cairnctl --version` print after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("CAIRN_GIT_COMMIT"),
    ", etcd API 3.5)"
);
