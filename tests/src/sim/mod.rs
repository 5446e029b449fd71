//! The network simulator behind `mtrsim`: a TUN device in a private network namespace, and
//! a responder that answers the real mtr-packet's probes as a scenario file says.

pub mod packet;
pub mod responder;
pub mod scenario;
pub mod tun;
