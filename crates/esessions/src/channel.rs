//! XEP-0200 stanza encryption: the `<c/>` element, implicit counters, rekey
//! with `<key/>`/`<new/>`, and MAC-key publishing with `<old/>`.

use crate::prim::{self, DhPrivate, Group, Ops};
use e2elab_core::b64;
use e2elab_core::error::backend;
use e2elab_core::{
    ct_eq, stanza, DecodeError, Element, Env, Error, Result, SecretBytes, Timestamp,
};
use openssl::bn::BigNum;

/// XEP-0200 namespace (v0.16 era).
pub const NS_C: &str = "http://www.xmpp.org/extensions/xep-0200.html#ns";

/// Children of a stanza that stay in clear (XEP-0200 §"Encryptable Content").
pub fn stays_clear(el: &Element) -> bool {
    matches!(el.name(), "thread" | "error") && el.ns() == stanza::NS_CLIENT
        || el.is("amp", "http://jabber.org/protocol/amp")
}

/// One direction's keys and counter.
pub struct DirKeys {
    /// Cipher key (KC).
    pub kc: SecretBytes,
    /// MAC key (KM).
    pub km: SecretBytes,
}

impl std::fmt::Debug for DirKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirKeys([redacted])")
    }
}

/// A set of values kept for inbound stanzas: the peer's keys and our DH private value.
#[derive(Debug)]
struct RxSet {
    keys: DirKeys,
    own_dh: DhPrivate,
    since: Timestamp,
}

/// Parameters fixed by the negotiation.
#[derive(Debug, Clone, Copy)]
pub struct Suite {
    /// Cipher key bytes taken from each HMAC output (16 for aes128-ctr; 32 in gajim-compat).
    pub key_len: usize,
    /// Block bits (128).
    pub n_bits: usize,
    /// Exponent size for rekeys.
    pub exponent: prim::ExponentSize,
    /// How the AES-CTR keystream is laid out.
    pub reading: CtrReading,
}

/// How a direction's AES-CTR keystream is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrReading {
    /// XEP-0116/XEP-0200 and NIST CTR (DECISIONS 7): the first block of an
    /// encryption under counter C uses C; every (partial) block advances
    /// the counter by one; stanza plaintext is padded with spaces to whole
    /// blocks of 16 *bytes*, so no keystream is left over.
    Spec,
    /// Gajim (GAJIM-NOTES.md, DEVIATIONS): the first block uses C+1 (its
    /// counter callback increments before returning), plaintext is padded
    /// to 16 *characters* before UTF-8 encoding, and keystream left in a
    /// partial last block is used first by the next encryption under the
    /// same key.
    Gajim,
}

/// Where one direction's keystream stands under one key: the counter the
/// next MAC covers and, in Gajim's reading, unused keystream bytes.
#[derive(Default)]
pub struct Stream {
    /// The counter value C (the one MACs cover).
    pub counter: u128,
    leftover: Vec<u8>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.leftover.zeroize();
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stream([redacted])")
    }
}

impl Stream {
    /// A fresh keystream (a new key) at counter `c`.
    pub fn at(counter: u128) -> Stream {
        Stream {
            counter,
            leftover: Vec::new(),
        }
    }

    /// Unused keystream bytes carried to the next encryption (Gajim's reading).
    pub fn leftover_len(&self) -> usize {
        self.leftover.len()
    }

    /// The same position under a new key: the counter continues, no keystream carries.
    pub fn rekeyed(&self) -> Stream {
        Stream::at(self.counter)
    }

    /// Encrypt (or decrypt: CTR is symmetric) `data` with `key`, advancing the stream.
    pub fn apply(&mut self, key: &[u8], reading: CtrReading, data: &[u8]) -> Result<Vec<u8>> {
        match reading {
            CtrReading::Spec => {
                let out = prim::aes_ctr(key, self.counter, data)?;
                self.counter = self.counter.wrapping_add(prim::blocks(data.len()));
                Ok(out)
            }
            CtrReading::Gajim => {
                let take = self.leftover.len().min(data.len());
                let mut out: Vec<u8> = data[..take]
                    .iter()
                    .zip(self.leftover.drain(..take))
                    .map(|(d, k)| d ^ k)
                    .collect();
                let rest = &data[take..];
                if !rest.is_empty() {
                    // Zeros past the data encrypt to the keystream itself: what is left over.
                    let mut padded = rest.to_vec();
                    padded.resize(rest.len().div_ceil(16) * 16, 0);
                    let mut ks = prim::aes_ctr(key, self.counter.wrapping_add(1), &padded)?;
                    out.extend_from_slice(&ks[..rest.len()]);
                    self.leftover = ks[rest.len()..].to_vec();
                    {
                        use zeroize::Zeroize;
                        ks.zeroize();
                    }
                    self.counter = self.counter.wrapping_add(prim::blocks(rest.len()));
                }
                Ok(out)
            }
        }
    }
}

/// Pad stanza plaintext with spaces (DECISIONS: padding): to a multiple of
/// 16 bytes (spec) or 16 characters (Gajim).
pub fn pad(m: &mut String, reading: CtrReading) {
    match reading {
        CtrReading::Spec => {
            while m.len() % 16 != 0 {
                m.push(' ');
            }
        }
        CtrReading::Gajim => {
            let n = m.chars().count();
            for _ in 0..(16 - n % 16) % 16 {
                m.push(' ');
            }
        }
    }
}

/// XEP-0200 §Re-Key: the (initiator, acceptor) key sets from the raw shared value K.
pub fn rekey_keys(k: &SecretBytes, key_len: usize) -> Result<[DirKeys; 2]> {
    let h = |label: &str| prim::hmac_sha256(k.expose(), &[label.as_bytes()]);
    Ok([
        DirKeys {
            kc: lsb(&h("Rekey Initiator Crypt")?, key_len),
            km: lsb(&h("Rekey Initiator MAC")?, 32),
        },
        DirKeys {
            kc: lsb(&h("Rekey Acceptor Crypt")?, key_len),
            km: lsb(&h("Rekey Acceptor MAC")?, 32),
        },
    ])
}

/// Take the `len` least significant bytes of an HMAC output.
pub fn lsb(mac: &[u8; 32], len: usize) -> SecretBytes {
    SecretBytes::from_slice(&mac[32 - len.min(32)..])
}

/// The established channel.
pub struct Channel {
    suite: Suite,
    group: Group,
    tx: DirKeys,
    tx_stream: Stream,
    rx_stream: Stream,
    sets: Vec<RxSet>,
    peer_dh: BigNum,
    keys_received: u32,
    pending_publish: Vec<SecretBytes>,
    to_publish: Vec<SecretBytes>,
    /// Publish old MAC keys once a rekey is acknowledged.
    pub publish_old: bool,
    /// Stanzas sent since the last rekey we initiated.
    pub sent_since_rekey: u64,
    /// Rekeys this side initiated.
    pub rekeys_sent: u64,
    /// Old MAC keys the peer published (for the repudiation experiments).
    pub published_by_peer: Vec<Vec<u8>>,
    /// Known-bad control `control-no-mac`: accept any MAC.
    pub skip_mac_check: bool,
    /// Known-bad control `control-no-counter`: the counters never advance.
    pub frozen_counters: bool,
}

/// Everything a [`Channel`] holds, for [`e2elab_core::Session::dangerous_export_state`].
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ChannelExport {
    /// MODP group number.
    pub group: u32,
    /// Cipher key length.
    pub key_len: usize,
    /// Our sending keys (hex).
    pub tx_kc: String,
    /// Our sending MAC key (hex).
    pub tx_km: String,
    /// Next sending counter (hex of the 128-bit value).
    pub tx_ctr: String,
    /// Next receiving counter.
    pub rx_ctr: String,
    /// Receiving key sets, oldest first: (kc, km, our DH private value), hex.
    pub rx_sets: Vec<(String, String, String)>,
    /// The peer's latest DH public value (hex).
    pub peer_dh: String,
}

impl Drop for ChannelExport {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.tx_kc.zeroize();
        self.tx_km.zeroize();
        for (a, b, c) in &mut self.rx_sets {
            a.zeroize();
            b.zeroize();
            c.zeroize();
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("tx", &self.tx_stream)
            .field("sets", &self.sets.len())
            .finish_non_exhaustive()
    }
}

/// The grace period for old key sets (XEP-0200 §Re-Key: "60 seconds should cover a round trip").
pub const REKEY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a decrypted `<c/>` carried (plaintext: no `Debug`).
pub struct Opened {
    /// The decrypted content (serialized XML of the protected children).
    pub content: Vec<Element>,
}

impl Channel {
    /// A channel from the handshake's final keys and counters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        suite: Suite,
        group: Group,
        tx: DirKeys,
        tx_stream: Stream,
        rx: DirKeys,
        rx_stream: Stream,
        own_dh: DhPrivate,
        peer_dh: BigNum,
        now: Timestamp,
    ) -> Channel {
        Channel {
            suite,
            group,
            tx,
            tx_stream,
            rx_stream,
            sets: vec![RxSet {
                keys: rx,
                own_dh,
                since: now,
            }],
            peer_dh,
            keys_received: 0,
            pending_publish: Vec::new(),
            to_publish: Vec::new(),
            publish_old: true,
            sent_since_rekey: 0,
            rekeys_sent: 0,
            published_by_peer: Vec::new(),
            skip_mac_check: false,
            frozen_counters: false,
        }
    }

    /// The whole state, for the compromise experiments.
    pub fn export(&self) -> Result<ChannelExport> {
        Ok(ChannelExport {
            group: self.group.id,
            key_len: self.suite.key_len,
            tx_kc: hex::encode(self.tx.kc.expose()),
            tx_km: hex::encode(self.tx.km.expose()),
            tx_ctr: format!("{:032x}", self.tx_stream.counter),
            rx_ctr: format!("{:032x}", self.rx_stream.counter),
            rx_sets: self
                .sets
                .iter()
                .map(|s| {
                    (
                        hex::encode(s.keys.kc.expose()),
                        hex::encode(s.keys.km.expose()),
                        s.own_dh.to_hex(),
                    )
                })
                .collect(),
            peer_dh: hex::encode(self.peer_dh.to_vec()),
        })
    }

    /// When an old key set expires (if any is kept).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.sets.len() > 1 {
            self.sets.get(1).map(|s| s.since.plus(REKEY_GRACE))
        } else {
            None
        }
    }

    /// Drop key sets older than the grace period.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while self.sets.len() > 1 && self.sets[1].since.plus(REKEY_GRACE) <= now {
            self.sets.remove(0);
        }
    }

    fn rekey_keys(&self, k: &SecretBytes) -> Result<[DirKeys; 2]> {
        rekey_keys(k, self.suite.key_len)
    }

    /// Whether a rekey we started is still unacknowledged.
    pub fn rekey_pending(&self) -> bool {
        self.sets.len() > 1
    }

    /// Seal `content` (the protected children) into a `<c/>`; `rekey` starts a key re-exchange.
    pub fn seal(
        &mut self,
        env: &mut Env,
        ops: &mut Ops,
        content: &[Element],
        rekey: bool,
        now: Timestamp,
    ) -> Result<Element> {
        let mut m = String::new();
        for c in content {
            m.push_str(&stanza::serialize(c));
        }
        pad(&mut m, self.suite.reading);
        let ctr = self.tx_stream.counter;
        let mut parts: Vec<(&'static str, String)> = Vec::new();
        if m.is_empty() {
            // XEP-0200: no content to encrypt, the counter still advances by one.
            self.tx_stream.counter = ctr.wrapping_add(1);
        } else {
            let ct = self
                .tx_stream
                .apply(self.tx.kc.expose(), self.suite.reading, m.as_bytes())?;
            parts.push(("data", b64::encode(ct)));
        }
        if self.frozen_counters {
            self.tx_stream = Stream::at(ctr);
        }
        let mut new_keys = None;
        if rekey && !self.rekey_pending() {
            let (x, e) = ops.dh_keygen(env, &self.group, self.suite.n_bits, self.suite.exponent)?;
            let k = ops.dh_shared(&self.group, &self.peer_dh, &x)?;
            let [init, acc] = self.rekey_keys(&k)?;
            parts.push(("key", b64::encode(e.to_vec())));
            new_keys = Some((x, init, acc));
        }
        if self.keys_received > 0 {
            parts.push(("new", self.keys_received.to_string()));
        }
        for old in self.to_publish.drain(..) {
            parts.push(("old", b64::encode(old.expose())));
        }
        let m_content = m_content(&parts);
        let mac = prim::hmac_sha256(
            self.tx.km.expose(),
            &[m_content.as_bytes(), &prim::counter_bytes(ctr)],
        )?;
        let mut c = Element::bare("c", NS_C);
        for (name, text) in &parts {
            c.append_child(stanza::text_element(name, NS_C, text));
        }
        c.append_child(stanza::text_element("mac", NS_C, &b64::encode(mac)));
        // Commit state only after everything above succeeded.
        self.keys_received = 0;
        self.sent_since_rekey += 1;
        if let Some((x, init, acc)) = new_keys {
            // Our old MAC key may be published once the peer acknowledges the new key.
            let old_tx = std::mem::replace(&mut self.tx, init);
            self.tx_stream = self.tx_stream.rekeyed();
            self.pending_publish.push(old_tx.km);
            self.sets.push(RxSet {
                keys: acc,
                own_dh: x,
                since: now,
            });
            self.sent_since_rekey = 0;
            self.rekeys_sent += 1;
        }
        Ok(c)
    }

    /// Verify and decrypt a `<c/>`. Any failure is fatal for the session
    /// (XEP-0200 §Decrypting: "MUST terminate"); the caller terminates.
    pub fn open(&mut self, ops: &mut Ops, c: &Element) -> Result<Opened> {
        let mut parts: Vec<(&'static str, String)> = Vec::new();
        let mut mac_b64 = None;
        for ch in c.children() {
            if ch.ns() != NS_C
                || ch.attrs().iter().next().is_some()
                || ch.children().next().is_some()
            {
                return Err(
                    DecodeError::invalid("c", format!("unexpected <{}>", ch.name())).into(),
                );
            }
            let name: &'static str = match ch.name() {
                "data" => "data",
                "key" => "key",
                "new" => "new",
                "old" => "old",
                "mac" => {
                    if mac_b64.is_some() {
                        return Err(DecodeError::invalid("c", "two <mac/>").into());
                    }
                    mac_b64 = Some(ch.text());
                    continue;
                }
                other => {
                    return Err(DecodeError::invalid("c", format!("unexpected <{other}>")).into())
                }
            };
            if mac_b64.is_some() {
                return Err(DecodeError::invalid("c", "content after <mac/>").into());
            }
            parts.push((name, ch.text()));
        }
        let mac = b64::decode(
            mac_b64
                .ok_or_else(|| DecodeError::Missing("<mac/>".into()))?
                .trim(),
        )
        .map_err(|_| DecodeError::invalid("mac", "not base64"))?;
        let count = |n: &str| parts.iter().filter(|(k, _)| *k == n).count();
        if count("data") > 1 || count("key") > 1 || count("new") > 1 {
            return Err(DecodeError::invalid("c", "repeated element").into());
        }
        // <new>N</new> selects the key set (N of our <key/>s the peer had received).
        let set_idx = match parts.iter().find(|(k, _)| *k == "new") {
            Some((_, n)) => n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1 && *n < self.sets.len())
                .ok_or_else(|| DecodeError::invalid("new", "no such key set"))?,
            None => 0,
        };
        let ctr = self.rx_stream.counter;
        let m_content = m_content(&parts);
        let want = prim::hmac_sha256(
            self.sets[set_idx].keys.km.expose(),
            &[m_content.as_bytes(), &prim::counter_bytes(ctr)],
        )?;
        if !ct_eq(&want, &mac) && !self.skip_mac_check {
            return Err(Error::DecryptFailed);
        }
        // Authenticated from here on.
        let data = match parts.iter().find(|(k, _)| *k == "data") {
            Some((_, d)) => Some(
                b64::decode(d.trim()).map_err(|_| DecodeError::invalid("data", "not base64"))?,
            ),
            None => None,
        };
        let key = match parts.iter().find(|(k, _)| *k == "key") {
            Some((_, d)) => {
                let bytes =
                    b64::decode(d.trim()).map_err(|_| DecodeError::invalid("key", "not base64"))?;
                let e = BigNum::from_slice(&bytes).map_err(backend)?;
                if !self.group.in_range(&e) {
                    return Err(DecodeError::invalid("key", "outside 1 < e < p-1").into());
                }
                Some(e)
            }
            None => None,
        };
        // Decrypt on a copy of the stream: nothing moves unless the content parses.
        let mut stream = Stream {
            counter: ctr,
            leftover: self.rx_stream.leftover.clone(),
        };
        if set_idx > 0 {
            stream = stream.rekeyed();
        }
        let plaintext = match &data {
            Some(ct) => {
                Some(stream.apply(self.sets[set_idx].keys.kc.expose(), self.suite.reading, ct)?)
            }
            None => {
                stream.counter = ctr.wrapping_add(1);
                None
            }
        };
        let content = match &plaintext {
            Some(pt) => parse_content(pt)?,
            None => Vec::new(),
        };
        // Everything checked: commit.
        self.rx_stream = if self.frozen_counters {
            Stream::at(ctr)
        } else {
            stream
        };
        if set_idx > 0 {
            // The peer now uses our new key: older sets go, and old MAC keys may be published.
            let dropped: Vec<RxSet> = self.sets.drain(..set_idx).collect();
            if self.publish_old {
                self.to_publish.append(&mut self.pending_publish);
                for d in &dropped {
                    self.to_publish.push(d.keys.km.clone());
                }
            } else {
                self.pending_publish.clear();
            }
        }
        for (k, v) in &parts {
            if *k == "old" {
                if let Ok(b) = b64::decode(v.trim()) {
                    self.published_by_peer.push(b);
                }
            }
        }
        if let Some(e) = key {
            let k = ops.dh_shared(&self.group, &e, &self.sets[0].own_dh)?;
            let [init, acc] = self.rekey_keys(&k)?;
            for s in self.sets.iter_mut() {
                s.keys = DirKeys {
                    kc: init.kc.clone(),
                    km: init.km.clone(),
                };
            }
            if self.sets.len() == 1 {
                self.tx = acc;
                self.tx_stream = self.tx_stream.rekeyed();
            }
            self.rx_stream = self.rx_stream.rekeyed();
            self.peer_dh = e;
            self.keys_received += 1;
        }
        Ok(Opened { content })
    }
}

/// XEP-0200 `m_content`: the `<c/>` children but `<mac/>`, as `<name>text</name>`, text trimmed.
pub fn m_content(parts: &[(&'static str, String)]) -> String {
    let mut s = String::new();
    for (k, v) in parts {
        s.push('<');
        s.push_str(k);
        s.push('>');
        s.push_str(v.trim());
        s.push_str("</");
        s.push_str(k);
        s.push('>');
    }
    s
}

/// Parse decrypted content: serialized elements, possibly padded with whitespace.
pub fn parse_content(pt: &[u8]) -> Result<Vec<Element>> {
    let text = std::str::from_utf8(pt).map_err(|_| DecodeError::invalid("data", "not UTF-8"))?;
    let wrapped = format!("<content xmlns='{}'>{}</content>", stanza::NS_CLIENT, text);
    let el = stanza::parse(&wrapped)?;
    if el.texts().any(|t| !t.trim().is_empty()) {
        return Err(DecodeError::invalid("data", "text outside elements").into());
    }
    Ok(el.children().cloned().collect())
}
