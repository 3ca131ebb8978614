//! Effects of a session call: stanzas to transmit and events for the application.

use minidom::Element;
use std::collections::VecDeque;

/// Who the peer turned out to be once a session is established.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerIdentity {
    /// The peer's JID as authenticated (bare or full, as the protocol binds it).
    pub jid: String,
    /// Fingerprint of the long-term key that authenticated the peer, if any
    /// (hex, protocol-defined hash). `None` for unauthenticated protocols.
    pub fingerprint: Option<String>,
    /// A short authentication string for the users to compare, if the protocol has one.
    pub sas: Option<String>,
    /// How the peer was authenticated, in a few words ("rsa signature",
    /// "retained secret", "none", ...).
    pub method: String,
}

/// Non-fatal conditions the user should see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Warning {
    /// The peer's long-term key differs from the one remembered for its JID.
    KeyChanged {
        /// The peer's JID.
        jid: String,
        /// Fingerprint remembered earlier.
        old: String,
        /// Fingerprint presented now.
        new: String,
    },
    /// The peer is not authenticated by a key; the user should compare the SAS.
    Unauthenticated {
        /// Why.
        reason: String,
    },
    /// A message was accepted but the protocol flags it (e.g. an RFC 3923
    /// timestamp not greater than an earlier one).
    Suspicious {
        /// What was noticed.
        reason: String,
    },
    /// Elements that arrived in clear beside the protected content of a
    /// stanza (e.g. a fallback `<body/>` or hints beside an ESessions
    /// `<c/>`): not delivered, reported so the user knows they were there.
    UnprotectedExtras {
        /// `{namespace}name` of each, in order.
        elements: Vec<String>,
    },
    /// A stanza with nothing protected arrived in an established session
    /// (the peer sent it in clear, or someone on the path injected it). It
    /// is delivered as [`Event::DeliveredUnprotected`]; every profile warns
    /// the same way ([`Outbox::deliver_unprotected`]).
    UnprotectedStanza {
        /// `{namespace}name` of the stanza's children, in order.
        elements: Vec<String>,
    },
    /// Anything else worth telling the user.
    Other(String),
}

/// What protected a delivered stanza: every [`Event::Delivered`] carries
/// one, so an application (and the security experiments) can tell, child
/// by child, what the session vouches for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Protection {
    /// `{namespace}name` of each child of the delivered stanza that arrived
    /// under the protection below, in document order.
    pub covered: Vec<String>,
    /// `{namespace}name` of each child delivered as it arrived, in clear and
    /// unchecked (routing hints a protocol leaves outside, say), in order.
    pub clear: Vec<String>,
    /// The covered children were encrypted on the wire.
    pub confidential: bool,
    /// The covered children were checked (a MAC or a signature) under `key`:
    /// they are as the key's holder sent them.
    pub authenticated: bool,
    /// The key that protected them, protocol-defined, as `scheme:id`
    /// (`xep0200:<session>`, `otr:<secure session id>`,
    /// `openpgp:<fingerprint>`, `x509:<fingerprint>`...). Empty when
    /// nothing is covered.
    pub key: String,
}

impl Protection {
    /// Label `stanza`'s children: those `is_covered` says came under the
    /// protection, the rest clear.
    pub fn split(
        stanza: &Element,
        is_covered: impl Fn(&Element) -> bool,
        confidential: bool,
        authenticated: bool,
        key: String,
    ) -> Protection {
        let (mut covered, mut clear) = (Vec::new(), Vec::new());
        for c in stanza.children() {
            let n = child_name(c);
            if is_covered(c) {
                covered.push(n);
            } else {
                clear.push(n);
            }
        }
        Protection {
            covered,
            clear,
            confidential,
            authenticated,
            key,
        }
    }

    /// Every child covered.
    pub fn all(stanza: &Element, confidential: bool, authenticated: bool, key: String) -> Self {
        Self::split(stanza, |_| true, confidential, authenticated, key)
    }

    /// Nothing covered: a session with no protection layer (the control rows).
    pub fn none(stanza: &Element) -> Self {
        Self::split(stanza, |_| false, false, false, String::new())
    }

    /// One line for logs and the peer's output:
    /// `covered=[..] clear=[..] encrypted authenticated key=..`.
    pub fn summary(&self) -> String {
        format!(
            "covered=[{}] clear=[{}]{}{} key={}",
            self.covered.join(","),
            self.clear.join(","),
            if self.confidential { " encrypted" } else { "" },
            if self.authenticated {
                " authenticated"
            } else {
                ""
            },
            if self.key.is_empty() {
                "none"
            } else {
                &self.key
            }
        )
    }
}

/// `{namespace}name` of an element.
pub fn child_name(e: &Element) -> String {
    format!("{{{}}}{}", e.ns(), e.name())
}

/// Something the application learns from a session call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake finished; protected stanzas now flow.
    Established(PeerIdentity),
    /// A protected stanza from the peer, recovered into the original
    /// application stanza, with what protected which of its children.
    Delivered {
        /// The application stanza.
        stanza: Element,
        /// What the session vouches for.
        protection: Protection,
    },
    /// A stanza that arrived *without* the protection the session gives (e.g.
    /// OTR's "received unencrypted message"), handed over so the application
    /// can show it as such. Never used for content that failed a check.
    DeliveredUnprotected(Element),
    /// The peer ended the session.
    PeerClosed,
    /// This side ended the session.
    Closed,
    /// An application stanza the session accepted (held while a handshake
    /// ran) that it will never send: the session closed or the handshake
    /// failed first. Every held stanza ends either sent or reported here.
    NotSent {
        /// The stanza as the application gave it.
        stanza: Element,
        /// Why.
        reason: String,
    },
    /// A warning for the user.
    Warning(Warning),
}

/// The two queues a session call writes into. The caller drains them.
#[derive(Debug, Default)]
pub struct Outbox {
    transmit: VecDeque<Element>,
    events: VecDeque<Event>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a stanza for the peer (session side).
    pub fn send(&mut self, stanza: Element) {
        self.transmit.push_back(stanza);
    }

    /// Queue an event for the application (session side).
    pub fn event(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    /// Deliver a protected stanza with its label (session side).
    pub fn deliver(&mut self, stanza: Element, protection: Protection) {
        self.events
            .push_back(Event::Delivered { stanza, protection });
    }

    /// Deliver a stanza that carried no protection (session side): the one
    /// rule every profile follows. In an established session it is preceded
    /// by [`Warning::UnprotectedStanza`].
    pub fn deliver_unprotected(&mut self, established: bool, stanza: Element) {
        if established {
            self.events
                .push_back(Event::Warning(Warning::UnprotectedStanza {
                    elements: stanza.children().map(child_name).collect(),
                }));
        }
        self.events.push_back(Event::DeliveredUnprotected(stanza));
    }

    /// Next stanza to put on the wire.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Element> {
        self.transmit.pop_front()
    }

    /// Next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Stanzas waiting.
    pub fn pending_transmits(&self) -> usize {
        self.transmit.len()
    }

    /// Events waiting.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// A checkpoint of the queue lengths, for restoring after a failed call.
    pub fn checkpoint(&self) -> (usize, usize) {
        (self.transmit.len(), self.events.len())
    }

    /// Drop everything queued since `cp` (a failed call must emit nothing).
    pub fn restore(&mut self, cp: (usize, usize)) {
        self.transmit.truncate(cp.0);
        self.events.truncate(cp.1);
    }
}
