//! TLS as TDS 7.x does it: the handshake records travel inside PRELOGIN (0x12)
//! packets, after which the connection carries raw TLS records (MS-TDS 2.2.6.5, 3.3.5.3).
//! [`PreloginWrapped`] does the wrapping under tokio-rustls' ordinary acceptor, the
//! mirror image of tiberius' `TlsPreloginWrapper`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::packet::{packet_type, status, PacketHeader, HEADER_LEN};

/// The server's certificate and key, and whether it insists on encryption.
#[derive(Clone)]
pub struct TlsSettings {
    /// DER certificates, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// PKCS#8 DER private key of the leaf.
    pub private_key: Vec<u8>,
    /// Answer ENCRYPT_REQ to clients that do not ask for encryption ("Force
    /// Encryption" on a real server).
    pub force_encryption: bool,
}

// Never print the key.
impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert_chain", &format_args!("{} certificates", self.cert_chain.len()))
            .field("private_key", &"<redacted>")
            .field("force_encryption", &self.force_encryption)
            .finish()
    }
}

impl TlsSettings {
    /// A fresh self-signed certificate for `names` (e.g. `["localhost"]`), as SQL
    /// Server generates for itself when no certificate is configured. Clients must
    /// trust it explicitly (tiberius: `Config::trust_cert()`).
    pub fn self_signed(names: &[&str]) -> Result<Self, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            cert_chain: vec![certified.cert.der().to_vec()],
            private_key: certified.key_pair.serialize_der(),
            force_encryption: false,
        })
    }

    /// Builds the rustls acceptor for these settings.
    pub(crate) fn acceptor(&self) -> io::Result<tokio_rustls::TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = self
            .cert_chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.private_key.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(io::Error::other)?;
        // TLS 1.3 session tickets are sent after the handshake completes, when the
        // client has already switched to raw TLS but we would still be wrapping; SQL
        // Server sends none either.
        config.send_tls13_tickets = 0;
        // TDS 8.0 strict clients offer this protocol; older clients offer none.
        config.alpn_protocols = vec![b"tds/8.0".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// A transport that, until [`PreloginWrapped::handshake_done`], strips PRELOGIN packet
/// headers from what it reads and frames what it writes into PRELOGIN packets (one per
/// flush); afterwards it passes bytes through untouched.
#[derive(Debug)]
pub struct PreloginWrapped<S> {
    inner: S,
    handshaking: bool,
    header: [u8; HEADER_LEN],
    header_read: usize,
    /// Payload bytes left in the PRELOGIN packet being read.
    payload_left: usize,
    /// Outgoing handshake bytes, behind a placeholder header.
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_written: usize,
    /// Raw bytes read while looking for a PRELOGIN header that turned out to be the
    /// start of the first TLS record; delivered before anything else.
    stash: Vec<u8>,
}

impl<S> PreloginWrapped<S> {
    /// Wraps `inner` in handshake mode.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            handshaking: true,
            header: [0; HEADER_LEN],
            header_read: 0,
            payload_left: 0,
            out: Vec::new(),
            out_written: 0,
            stash: Vec::new(),
        }
    }

    /// Switches to pass-through once the TLS handshake is complete.
    pub fn handshake_done(&mut self) {
        if self.handshaking && self.header_read > 0 {
            // Part of the first raw record was read as a would-be header.
            let partial = self.header[..self.header_read].to_vec();
            self.stash.extend_from_slice(&partial);
            self.header_read = 0;
        }
        self.handshaking = false;
    }

    /// The underlying transport (to drop TLS after a login-only encryption).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginWrapped<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.handshaking {
            if !this.stash.is_empty() {
                let n = this.stash.len().min(buf.remaining());
                buf.put_slice(&this.stash[..n]);
                this.stash.drain(..n);
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Between packets: read a whole header first.
        while this.payload_left == 0 {
            while this.header_read < HEADER_LEN {
                let mut hb = ReadBuf::new(&mut this.header[this.header_read..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut hb))?;
                let n = hb.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(())); // EOF
                }
                this.header_read += n;
            }
            this.header_read = 0;
            let header = PacketHeader::decode(this.header);
            if header.ty != packet_type::PRELOGIN {
                // tokio-rustls keeps reading after the handshake completes, and with
                // TLS 1.3 the client's first record (LOGIN7) follows its Finished at
                // once, unwrapped. Keep the bytes, switch to pass-through and report
                // "no data yet": a finished handshake then returns, an unfinished one
                // is polled again and fails on the raw bytes as a TLS error.
                this.stash = this.header.to_vec();
                this.handshaking = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.payload_left = usize::from(header.length)
                .checked_sub(HEADER_LEN)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short packet"))?;
        }
        // Never read past the current packet: after the client's last handshake
        // flight come raw TLS records.
        let limit = this.payload_left.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.advance(n);
        this.payload_left -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginWrapped<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.handshaking {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        if this.out.is_empty() {
            this.out.resize(HEADER_LEN, 0);
        }
        this.out.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.out.len() > HEADER_LEN {
            if this.out_written == 0 {
                let length = u16::try_from(this.out.len())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "handshake flight too large"))?;
                let header = PacketHeader {
                    ty: packet_type::PRELOGIN,
                    status: status::END_OF_MESSAGE,
                    length,
                    spid: 0,
                    id: 1,
                };
                let mut h = Vec::with_capacity(HEADER_LEN);
                header.encode(&mut h);
                this.out[..HEADER_LEN].copy_from_slice(&h);
            }
            while this.out_written < this.out.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.out[this.out_written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                this.out_written += n;
            }
            this.out.clear();
            this.out_written = 0;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
