//! One XMPP client connection: TCP (optionally STARTTLS), SASL through
//! tokio-xmpp, resource binding, then raw stanzas both ways.
//!
//! tokio-xmpp's `Client` speaks typed `xmpp_parsers` stanzas, and converting a
//! stanza to `Message` reorders its children (bodies, subjects, thread, then
//! payloads) and keys bodies by language. A transport that must show whether a
//! *server* changed a stanza cannot let its client library change it first, so
//! this module uses tokio-xmpp one layer down: its XML stream
//! ([`tokio_xmpp::xmlstream`]) carries `minidom::Element`s untouched, its
//! `client_login` runs SASL (SCRAM-SHA-256 first), and the resource is bound
//! here with a raw `<iq/>`.
//!
//! Bytes are counted at the TCP socket, below TLS: what the server read from
//! and wrote to this client. STARTTLS uses OpenSSL (`tokio-openssl`), trusting
//! exactly the certificate file it is given and checking the host name.

use e2elab_core::Element;
use futures::{SinkExt, StreamExt};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_xmpp::xmlstream::{
    self, PendingFeaturesRecv, StreamHeader, Timeouts, XmlStream, XmppStream,
};

const NS_CLIENT: &str = "jabber:client";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Server address (loopback in every test here).
    pub addr: SocketAddr,
    /// The XMPP domain (`localhost`).
    pub domain: String,
    /// Every account's password.
    pub password: String,
    /// STARTTLS, trusting this certificate (PEM) for the domain; `None`: plain TCP.
    pub tls_ca: Option<PathBuf>,
    /// How long to wait for any one step (connect, login, a stanza).
    pub timeout: Duration,
}

impl ServerSpec {
    /// Plain TCP to `addr` for `localhost`, password `pass`.
    pub fn plain(addr: SocketAddr) -> ServerSpec {
        ServerSpec {
            addr,
            domain: "localhost".into(),
            password: "pass".into(),
            tls_ca: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// The same server with STARTTLS, trusting `ca`.
    pub fn with_tls(&self, ca: PathBuf) -> ServerSpec {
        ServerSpec {
            tls_ca: Some(ca),
            ..self.clone()
        }
    }

    /// `tcp` or `starttls`.
    pub fn mode(&self) -> &'static str {
        if self.tls_ca.is_some() {
            "starttls"
        } else {
            "tcp"
        }
    }
}

/// Bytes that crossed the socket, counted below TLS.
#[derive(Debug, Default)]
pub struct ByteCounter {
    /// Written to the server.
    pub sent: AtomicU64,
    /// Read from the server.
    pub received: AtomicU64,
}

impl ByteCounter {
    /// (sent, received) now.
    pub fn get(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

struct Counted<S> {
    inner: S,
    n: Arc<ByteCounter>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        self.n.received.fetch_add(got as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(k)) = &r {
            self.n.sent.fetch_add(*k as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = BufStream<Box<dyn Io>>;

/// What arrived on a connection.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A stanza (or any other stream-level element), when it was parsed.
    Element(Element, Instant),
    /// An element that did not parse (the stream goes on).
    Unparseable(String),
    /// The stream ended or failed; nothing more will arrive.
    Closed(String),
}

/// A logged-in client connection with a background task that writes what it
/// is given and forwards everything it reads.
pub struct Conn {
    /// The full JID the server bound.
    pub jid: String,
    /// Socket byte counts.
    pub bytes: Arc<ByteCounter>,
    /// Wall time from TCP connect to bound resource.
    pub login: Duration,
    tx: mpsc::UnboundedSender<Element>,
    rx: mpsc::UnboundedReceiver<Inbound>,
    /// Elements read while waiting for something else.
    backlog: std::collections::VecDeque<(Element, Instant)>,
    closed: Option<String>,
    unparseable: Vec<String>,
    timeout: Duration,
    domain: String,
    queries: u64,
}

fn ncname(n: &str) -> crate::Result<e2elab_core::minidom::rxml::NcName> {
    e2elab_core::stanza::ncname(n).map_err(crate::Error::msg)
}

fn io_err(what: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::fail!("{what}: {e}")
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

fn timeouts() -> Timeouts {
    // Long enough that an idle client in a load run never sees a soft
    // timeout; every wait here has its own bound.
    Timeouts {
        read_timeout: Duration::from_secs(600),
        response_timeout: Duration::from_secs(600),
    }
}

async fn next_element(s: &mut XmlStream<Stream, Element>, what: &str) -> crate::Result<Element> {
    loop {
        match s.next().await {
            Some(Ok(el)) => return Ok(el),
            Some(Err(xmlstream::ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(crate::fail!("{what}: {e:?}")),
            None => return Err(crate::fail!("{what}: stream closed")),
        }
    }
}

/// Open an XML stream to `domain` over `io` (the stream header exchange).
async fn initiate(io: Box<dyn Io>, domain: &str) -> crate::Result<PendingFeaturesRecv<Stream>> {
    xmlstream::initiate_stream(BufStream::new(io), NS_CLIENT, header(domain), timeouts())
        .await
        .map_err(|e| io_err("stream header", e))
}

async fn starttls(io: Box<dyn Io>, spec: &ServerSpec, ca: &PathBuf) -> crate::Result<Box<dyn Io>> {
    let (features, mut s): (_, XmlStream<Stream, Element>) = initiate(io, &spec.domain)
        .await?
        .recv_features()
        .await
        .map_err(|e| io_err("stream features", e))?;
    if !features.can_starttls() {
        return Err("the server does not offer STARTTLS".into());
    }
    let req = Element::builder("starttls", NS_TLS).build();
    s.send(&req).await.map_err(|e| io_err("starttls", e))?;
    let answer = next_element(&mut s, "starttls").await?;
    if answer.name() != "proceed" {
        return Err(crate::fail!("starttls refused: <{}/>", answer.name()));
    }
    let inner = s.into_inner().into_inner();
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
        .map_err(|e| io_err("TLS", e))?;
    b.set_ca_file(ca)
        .map_err(|e| io_err(&format!("TLS trust {}", ca.display()), e))?;
    let ssl = b
        .build()
        .configure()
        .and_then(|c| c.into_ssl(&spec.domain))
        .map_err(|e| io_err("TLS", e))?;
    let mut tls = tokio_openssl::SslStream::new(ssl, inner).map_err(|e| io_err("TLS", e))?;
    Pin::new(&mut tls)
        .connect()
        .await
        .map_err(|e| io_err("TLS handshake", e))?;
    Ok(Box::new(tls))
}

async fn login(
    spec: &ServerSpec,
    node: &str,
    resource: &str,
    bytes: Arc<ByteCounter>,
) -> crate::Result<(XmlStream<Stream, Element>, String)> {
    let tcp = TcpStream::connect(spec.addr)
        .await
        .map_err(|e| io_err(&format!("connect {}", spec.addr), e))?;
    tcp.set_nodelay(true).map_err(|e| io_err("nodelay", e))?;
    let mut io: Box<dyn Io> = Box::new(Counted {
        inner: tcp,
        n: bytes,
    });
    if let Some(ca) = &spec.tls_ca {
        io = starttls(io, spec, ca).await?;
    }
    let (features, s): (_, XmppStream<Stream>) = initiate(io, &spec.domain)
        .await?
        .recv_features()
        .await
        .map_err(|e| io_err("stream features", e))?;
    let creds = sasl::common::Credentials::default()
        .with_username(node)
        .with_password(spec.password.clone())
        .with_channel_binding(sasl::common::ChannelBinding::None);
    let init = tokio_xmpp::client_login(s, features.sasl_mechanisms, creds)
        .await
        .map_err(|e| io_err(&format!("SASL as {node}"), e))?;
    let pending = init
        .send_header(header(&spec.domain))
        .await
        .map_err(|e| io_err("stream restart", e))?;
    let (_, mut s): (_, XmlStream<Stream, Element>) = pending
        .recv_features()
        .await
        .map_err(|e| io_err("stream features after SASL", e))?;
    let bind = Element::builder("iq", NS_CLIENT)
        .attr(ncname("type")?, "set")
        .attr(ncname("id")?, "bind-1")
        .append(
            Element::builder("bind", NS_BIND)
                .append(
                    Element::builder("resource", NS_BIND)
                        .append(resource)
                        .build(),
                )
                .build(),
        )
        .build();
    s.send(&bind).await.map_err(|e| io_err("bind", e))?;
    loop {
        let el = next_element(&mut s, "bind").await?;
        if el.name() == "iq" && el.attr("id") == Some("bind-1") {
            if el.attr("type") != Some("result") {
                return Err(crate::fail!(
                    "bind refused: {}",
                    e2elab_core::stanza::serialize(&el)
                ));
            }
            let jid = el
                .get_child("bind", NS_BIND)
                .and_then(|b| b.get_child("jid", NS_BIND))
                .map(|j| j.text())
                .ok_or("bind result without a JID")?;
            return Ok((s, jid));
        }
    }
}

async fn pump(
    mut s: XmlStream<Stream, Element>,
    mut out: mpsc::UnboundedReceiver<Element>,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    let why = loop {
        tokio::select! {
            cmd = out.recv() => match cmd {
                Some(el) => {
                    if let Err(e) = s.send(&el).await {
                        break format!("write: {e}");
                    }
                }
                None => {
                    // The owner dropped the connection: end the stream politely.
                    let _ = s.shutdown().await;
                    break "closed by us".to_string();
                }
            },
            got = s.next() => match got {
                Some(Ok(el)) => {
                    if inbound.send(Inbound::Element(el, Instant::now())).is_err() {
                        break "owner gone".to_string();
                    }
                }
                Some(Err(xmlstream::ReadError::SoftTimeout)) => {}
                Some(Err(xmlstream::ReadError::ParseError(e))) => {
                    // Non-fatal for the stream; the element is lost.
                    if inbound.send(Inbound::Unparseable(e.to_string())).is_err() {
                        break "owner gone".to_string();
                    }
                }
                Some(Err(e)) => break format!("read: {e:?}"),
                None => break "stream closed by the server".to_string(),
            },
        }
    };
    let _ = inbound.send(Inbound::Closed(why));
}

impl Conn {
    /// Connect, log in as `node@domain` and bind `resource`.
    pub async fn open(spec: &ServerSpec, node: &str, resource: &str) -> crate::Result<Conn> {
        let bytes = Arc::new(ByteCounter::default());
        let t0 = Instant::now();
        let (s, jid) =
            tokio::time::timeout(spec.timeout, login(spec, node, resource, bytes.clone()))
                .await
                .map_err(|_| {
                    crate::fail!("login as {node} timed out after {:?}", spec.timeout)
                })??;
        let login = t0.elapsed();
        let (tx, out) = mpsc::unbounded_channel();
        let (inbound, rx) = mpsc::unbounded_channel();
        tokio::spawn(pump(s, out, inbound));
        Ok(Conn {
            jid,
            bytes,
            login,
            tx,
            rx,
            backlog: Default::default(),
            closed: None,
            unparseable: Vec::new(),
            timeout: spec.timeout,
            domain: spec.domain.clone(),
            queries: 0,
        })
    }

    /// Queue a stanza for writing; returns when it was handed over.
    pub fn send(&self, el: Element) -> crate::Result<Instant> {
        let t = Instant::now();
        self.tx
            .send(el)
            .map_err(|_| crate::fail!("{}: connection task ended", self.jid))?;
        Ok(t)
    }

    fn pull(&mut self) -> bool {
        let mut any = false;
        while let Ok(m) = self.rx.try_recv() {
            any = true;
            match m {
                Inbound::Element(el, t) => self.backlog.push_back((el, t)),
                Inbound::Unparseable(e) => self.unparseable.push(e),
                Inbound::Closed(why) => {
                    self.closed.get_or_insert(why);
                }
            }
        }
        any
    }

    /// The spec's timeout for one step.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The next element that satisfies `want`, waiting at most the spec's
    /// timeout; elements that do not match stay in the backlog.
    pub async fn recv_matching(
        &mut self,
        want: impl Fn(&Element) -> bool,
    ) -> Result<(Element, Instant), RecvError> {
        self.recv_matching_for(want, self.timeout).await
    }

    /// [`Conn::recv_matching`] waiting at most `wait`.
    pub async fn recv_matching_for(
        &mut self,
        want: impl Fn(&Element) -> bool,
        wait: Duration,
    ) -> Result<(Element, Instant), RecvError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.pull();
            if let Some(i) = self.backlog.iter().position(|(el, _)| want(el)) {
                if let Some(x) = self.backlog.remove(i) {
                    return Ok(x);
                }
            }
            if let Some(why) = &self.closed {
                return Err(RecvError::Closed(why.clone()));
            }
            if let Some(e) = self.unparseable.pop() {
                return Err(RecvError::Unparseable(e));
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(RecvError::Timeout(wait)),
                Ok(None) => return Err(RecvError::Closed("connection task ended".into())),
                Ok(Some(Inbound::Element(el, t))) => self.backlog.push_back((el, t)),
                Ok(Some(Inbound::Unparseable(e))) => self.unparseable.push(e),
                Ok(Some(Inbound::Closed(why))) => {
                    self.closed.get_or_insert(why);
                }
            }
        }
    }

    /// The bytes the server counted for this session so far, (read from us,
    /// written to us), from the test server's `mod_e2elab_bytes` (Prosody's
    /// `bytes/in` and `bytes/out` filters: XML text, inside TLS). The query
    /// and its answer have a fixed size, so differences of two readings are
    /// exact up to one request and one answer.
    pub async fn server_bytes(&mut self) -> crate::Result<(u64, u64)> {
        const NS: &str = "urn:e2elab:bytes";
        self.queries += 1;
        let id = format!("bq-{:09}", self.queries);
        let iq = Element::builder("iq", NS_CLIENT)
            .attr(ncname("type")?, "get")
            .attr(ncname("id")?, id.as_str())
            .attr(ncname("to")?, self.domain.as_str())
            .append(Element::builder("query", NS).build())
            .build();
        self.send(iq)?;
        let (answer, _) = self
            .recv_matching(|e| e.name() == "iq" && e.attr("id") == Some(id.as_str()))
            .await
            .map_err(|e| crate::fail!("byte-count query: {e}"))?;
        let q = answer
            .get_child("query", NS)
            .filter(|_| answer.attr("type") == Some("result"))
            .ok_or_else(|| {
                format!(
                    "the server does not count bytes (mod_e2elab_bytes not loaded?): {}",
                    e2elab_core::stanza::serialize(&answer)
                )
            })?;
        let num = |k: &str| -> crate::Result<u64> {
            q.attr(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| crate::fail!("byte-count answer without a number '{k}'"))
        };
        Ok((num("in")?, num("out")?))
    }

    /// Take the first stanza of `type='error'` from `from` that arrived and
    /// was not asked for: the server bouncing a stanza this side sent.
    pub fn take_bounce(&mut self, from: &str) -> Option<Element> {
        self.pull();
        let i = self
            .backlog
            .iter()
            .position(|(e, _)| e.attr("type") == Some("error") && e.attr("from") == Some(from))?;
        self.backlog.remove(i).map(|(e, _)| e)
    }

    /// Everything that arrived and was not asked for (server errors, pushes).
    pub fn drain_unexpected(&mut self) -> Vec<Element> {
        self.pull();
        self.backlog.drain(..).map(|(el, _)| el).collect()
    }

    /// Why the stream ended, if it did.
    pub fn closed(&mut self) -> Option<String> {
        self.pull();
        self.closed.clone()
    }
}

/// Waiting for a stanza failed.
#[derive(Debug, Clone)]
pub enum RecvError {
    /// Nothing matching arrived in time.
    Timeout(Duration),
    /// The stream ended.
    Closed(String),
    /// An element arrived that did not parse.
    Unparseable(String),
    /// The server bounced the stanza with an error.
    Bounced(String),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Timeout(d) => write!(f, "nothing arrived within {d:?}"),
            RecvError::Closed(w) => write!(f, "stream ended: {w}"),
            RecvError::Unparseable(e) => write!(f, "an element arrived that did not parse: {e}"),
            RecvError::Bounced(e) => write!(f, "the server bounced it: {e}"),
        }
    }
}
