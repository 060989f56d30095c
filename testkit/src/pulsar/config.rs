//! Configuration of the broker stand-in: where it listens, whether it requires a
//! token, and the few limits a real broker announces or enforces.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the stand-in listens and behaves. `Default` listens on a free loopback port
/// without authentication, which is what tests want.
#[derive(Clone)]
pub struct PulsarStandinConfig {
    /// Address to listen on; port 0 picks a free port (see [`super::PulsarStandin::addr`]).
    pub bind: SocketAddr,
    /// When set, CONNECT must carry auth method `token` with exactly this token, or the
    /// client gets the AuthenticationError a broker sends, and the connection closes.
    pub token: Option<String>,
    /// URL answered to LOOKUP. `None`: `pulsar://` plus the local address the client
    /// reached, which is right unless clients come through NAT or a port mapping.
    pub advertised_url: Option<String>,
    /// A broker's `maxMessageSize` (broker.conf; default 5 MiB = 5242880), announced in
    /// CONNECTED's `max_message_size` (PulsarApi.proto). As on a broker, the limit is
    /// enforced on whole frames: one longer than this plus 10 KiB of padding for command
    /// and metadata (Java's `Commands.MESSAGE_SIZE_FRAME_PADDING`), its 4-byte size field
    /// included, closes the connection with no answer, and nothing of it is stored.
    /// Clients are expected to check sizes against the announced value before sending
    /// (the Java client does; the `pulsar` crate does not).
    pub max_message_size: usize,
    /// Interval of the stand-in's PINGs; a connection that sends nothing (not even a
    /// PONG) between two of them is closed, as a broker does.
    pub keep_alive: Duration,
    /// Time a new connection has to send CONNECT.
    pub handshake_timeout: Duration,
}

impl Default for PulsarStandinConfig {
    fn default() -> Self {
        PulsarStandinConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: None,
            advertised_url: None,
            max_message_size: 5 * 1024 * 1024,
            keep_alive: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Prints everything but the token, so configs can be logged.
impl std::fmt::Debug for PulsarStandinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarStandinConfig")
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("advertised_url", &self.advertised_url)
            .field("max_message_size", &self.max_message_size)
            .field("keep_alive", &self.keep_alive)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_token() {
        let config = PulsarStandinConfig {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
