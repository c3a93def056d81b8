//! The local address this member's outbound connections to other members leave from
//! (`--peer-dial-address`). On a host with several addresses, peers and firewalls that tell
//! members apart by source address (the fault-testing harness's partitions among them) need
//! each member to dial from its own address, not the one the kernel's routing picks.
//!
//! Set once at start-up and read by every dialer to peers and to the leader's client URL;
//! a process-wide value keeps it out of every forwarder's signature.

use std::net::IpAddr;
use std::sync::OnceLock;

use tonic::transport::Endpoint;

static SOURCE: OnceLock<IpAddr> = OnceLock::new();

/// Records the address; a second call (an in-process restart) keeps the first, which came
/// from the same flags.
pub fn set(address: IpAddr) {
    let _ = SOURCE.set(address);
}

/// `endpoint`, dialing from the configured address when there is one.
pub fn apply(endpoint: Endpoint) -> Endpoint {
    match SOURCE.get() {
        Some(address) => endpoint.local_address(Some(*address)),
        None => endpoint,
    }
}
