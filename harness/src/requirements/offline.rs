//! XEP-0210's Offline Sessions through a real server: Bob is not connected;
//! Alice starts a session and sends one message; whatever her session
//! emits goes to Prosody (with `mod_offline` on), then Alice disconnects.
//! Bob logs in, sends his initial presence, and his session is fed what the
//! server's offline storage hands him. The requirement is met when Bob's
//! session delivers Alice's message intact from that alone (his answers
//! would wait in Alice's offline storage: she never reads them).

use crate::driver;
use crate::link::Dir;
use crate::security::world::{canary_stanza, same_content};
use crate::xmpp::conn::{Conn, ServerSpec};
use crate::xmpp::server::Prosody;
use e2elab_core::{stanza, Element, StanzaKind};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One profile's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfflineOut {
    /// Profile id.
    pub protocol: String,
    /// Stanzas Alice's session emitted towards Bob while he was offline.
    pub sent: usize,
    /// Of which `<message>` stanzas (the kind offline storage keeps).
    pub sent_messages: usize,
    /// Stanzas the server handed Bob when he came online.
    pub stored: usize,
    /// Of these, carrying the server's XEP-0203 `<delay/>` stamp.
    pub delay_stamped: usize,
    /// Bob's session delivered Alice's message intact.
    pub delivered: bool,
    /// Errors Bob's session returned on what it was handed.
    pub errors: Vec<String>,
}

fn without_delay(e: &Element) -> Element {
    let mut c = e.clone();
    let _ = c.take_nodes();
    for n in e.nodes() {
        match n {
            e2elab_core::minidom::Node::Element(x) if x.is("delay", "urn:xmpp:delay") => {}
            other => {
                c.append_node(other.clone());
            }
        }
    }
    c
}

async fn one(
    spec: &ServerSpec,
    entry: &'static crate::registry::Entry,
    nodes: [String; 2],
    seed: u64,
) -> crate::Result<OfflineOut> {
    let proto = (entry.make)();
    let id = proto.info().id.to_string();
    let resource = "offline";
    let bare = [
        format!("{}@{}", nodes[0], spec.domain),
        format!("{}@{}", nodes[1], spec.domain),
    ];
    let jids = [
        format!("{}/{resource}", bare[0]),
        format!("{}/{resource}", bare[1]),
    ];
    let ids = driver::provision_as(proto.as_ref(), seed, [&bare[0], &bare[1]])?;
    let hooks = (entry.hooks)();
    let (options, _) = hooks.options();
    let mut link =
        driver::link_between(proto.as_ref(), &ids, seed, &options, [&jids[0], &jids[1]])?;
    // The sessions run on the server's clock: what Bob is handed carries
    // the server's XEP-0203 stamp, and a profile that checks a signed time
    // against it (XEP-0290) must see both from one clock.
    let wall = || {
        e2elab_core::Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        )
    };
    let start = wall();
    link.advance(start.since(link.now()));
    let (mut el, _) = canary_stanza(StanzaKind::Message, 0, 900)?;
    stanza::set_attr(&mut el, "from", &jids[0]).map_err(crate::Error::msg)?;
    stanza::set_attr(&mut el, "to", &jids[1]).map_err(crate::Error::msg)?;
    // Alice online, Bob not.
    let mut alice = Conn::open(spec, &nodes[0], resource).await?;
    if alice.jid != jids[0] {
        return Err(crate::fail!("bound {} instead of {}", alice.jid, jids[0]));
    }
    let mut errors = Vec::new();
    if let Err(e) = link.start() {
        errors.push(format!("Alice start: {e}"));
    }
    if let Err(e) = link.send(0, el.clone()) {
        errors.push(format!("Alice send: {e}"));
    }
    let (mut sent, mut sent_messages) = (0, 0);
    for (d, x) in link.take_in_flight() {
        if d != Dir::AtoB {
            continue;
        }
        let e = stanza::parse(&x).map_err(|e| crate::fail!("re-parsing an emission: {e}"))?;
        sent += 1;
        sent_messages += usize::from(e.name() == "message");
        alice.send(e)?;
    }
    // A round trip to the server after the stanzas: it has processed them.
    alice.server_bytes().await?;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Bob comes online and announces himself: the server hands over what it kept.
    let mut bob = Conn::open(spec, &nodes[1], resource).await?;
    bob.send(Element::bare("presence", stanza::NS_CLIENT))?;
    let mut got: Vec<Element> = Vec::new();
    let from_alice = |e: &Element| {
        e.ns() == stanza::NS_CLIENT
            && e.attr("from")
                .is_some_and(|f| stanza::bare_jid(f) == bare[0].as_str())
    };
    while let Ok((e, _)) = bob
        .recv_matching_for(from_alice, Duration::from_millis(1500))
        .await
    {
        got.push(e);
    }
    drop(bob);
    let delay_stamped = got
        .iter()
        .filter(|e| e.has_child("delay", "urn:xmpp:delay"))
        .count();
    link.advance(wall().since(link.now()));
    let mark = link.delivery_mark(1);
    for e in &got {
        let r = link.deliver_wire(Dir::AtoB, &stanza::serialize(e), "offline storage");
        if let Err(e) = r.result {
            errors.push(format!("Bob: {e}"));
        }
    }
    // The server's XEP-0203 stamp is the server's, outside any protection:
    // compared without it.
    let delivered = link
        .delivered_since(1, mark)
        .iter()
        .map(without_delay)
        .any(|g| same_content(&g, &el));
    Ok(OfflineOut {
        protocol: id,
        sent,
        sent_messages,
        stored: got.len(),
        delay_stamped,
        delivered,
        errors,
    })
}

/// Run every entry through one Prosody with offline storage on; returns
/// the server's version and one row per entry.
pub fn run(
    entries: &[&'static crate::registry::Entry],
    seed: u64,
    mut progress: impl FnMut(&str),
) -> crate::Result<(String, Vec<OfflineOut>)> {
    let p = Prosody::start_with_offline(2 * entries.len())?;
    let spec = ServerSpec::plain(p.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::fail!("tokio runtime: {e}"))?;
    let mut rows = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        progress(e.info().id);
        let nodes = [format!("user{}", 2 * i), format!("user{}", 2 * i + 1)];
        let row = rt
            .block_on(one(&spec, e, nodes, seed))
            .map_err(|err| crate::fail!("offline sessions, {}: {err}", e.info().id))?;
        rows.push(row);
    }
    let _ = p.stop();
    Ok((crate::xmpp::server::version(), rows))
}
