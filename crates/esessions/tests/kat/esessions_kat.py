#!/usr/bin/env python3
"""Independent known-answer oracle for ESessions (XEP-0116 v0.16, XEP-0200, XEP-0217).

Written from the specification texts only (and the project's recorded decisions on the
spec's ambiguities), as a second implementation to check the Rust crate against.

    python3 esessions_kat.py INPUT.json     verify a transcript, print the derived values
    python3 esessions_kat.py --self-test    check small hand-verifiable pieces

Two readings: "spec" (the XEP text) and "gajim" (the deployed implementation's resolutions
and deviations, GAJIM-NOTES.md).  Any failed check exits with status 1 naming case and check.
The MODP primes are computed from RFC 3526's pi formulas; --self-test compares them with
the RFC's hexadecimal values when ESESSIONS_RFC3526 (default ../shared/specs) points at rfc3526.txt.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

NS_FEATURE = "http://jabber.org/protocol/feature-neg"
NS_DATA = "jabber:x:data"
NS_INIT = "http://www.xmpp.org/extensions/xep-0116.html#ns-init"
NS_C = "http://www.xmpp.org/extensions/xep-0200.html#ns"
NS_XML = "http://www.w3.org/XML/1998/namespace"
RFC3526_PATH = os.environ.get("ESESSIONS_RFC3526", "/work/shared/specs/rfc3526.txt")
SAS_DIGITS = "acdefghikmopqruvwxy123456789"
BLOCK = 16
MOD128 = 1 << 128                      # n = 128 bits per AES block
XML_WS = " \t\r\n"
CIPHER_KEY_BYTES = {"aes128-ctr": 16, "aes192-ctr": 24, "aes256-ctr": 32}


class CheckFailed(Exception):
    """A verification failed: `check` names it, `detail` explains."""

    def __init__(self, check, detail):
        super().__init__(f"check '{check}' failed: {detail}")
        self.check = check


def require(cond, check, detail):
    if not cond:
        raise CheckFailed(check, detail)


# ---------------------------------------------------------------- integers, hashes, groups

def mpi(n):
    """XEP-0116 'Multiple-Precision Integers': big-endian, padded to whole octets, leading
    zero octets removed "so the high-order octet is non-zero" (0 therefore encodes as b'')."""
    require(n >= 0, "mpi", "negative integer")
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def mpi_decode(data, check):
    """Inverse of mpi(); rejects non-minimal encodings (a leading zero octet)."""
    require(not data.startswith(b"\x00"), check, "integer encoding has a leading zero octet")
    return int.from_bytes(data, "big")


def b64d(text, check):
    """RFC 4648 section 4 Base64 (whitespace inside the XML text is ignored)."""
    try:
        return base64.b64decode(re.sub(r"[ \t\r\n]", "", text), validate=True)
    except ValueError as exc:
        raise CheckFailed(check, f"bad base64 {text!r}: {exc}") from None


def b64e(data):
    return base64.b64encode(data).decode("ascii")


def sha256(data):
    return hashlib.sha256(data).digest()


def hmac256(key, data):
    """HMAC (RFC 2104) with SHA-256, the only HASH negotiated here."""
    return hmac.new(key, data, hashlib.sha256).digest()


def parse_rfc3526(text):
    """RFC 3526 sections 2-7: {group id: (p, g, formula)}; formula = (bits, low, pi_shift, add)
    from 'The prime is: 2^bits - 2^low - 1 + 2^64 * { [2^pi_shift pi] + add }'."""
    groups = {}
    parts = re.split(r"(?m)^\d+\.\s+\d+-bit MODP Group\s*$", text)[1:]
    for part in parts:
        gid = re.search(r"assigned id (\d+)|group (\d+) to designate", part)
        formula = re.search(r"prime is: 2\^(\d+) - 2\^(\d+) - 1 \+ 2\^64 \* "
                            r"\{ \[2\^(\d+) pi\] \+ (\d+) \}", part)
        hexpart = part.split("hexadecimal value is:")[1].split("The generator is:")[0]
        words = [w for line in hexpart.splitlines()
                 if re.fullmatch(r"\s*(?:[0-9A-F]{8}\s*)+", line) for w in line.split()]
        g = int(re.search(r"The generator is: (\d+)", part).group(1))
        groups[int(gid.group(1) or gid.group(2))] = (
            int("".join(words), 16), g, tuple(int(v) for v in formula.groups()))
    return groups


_GROUPS = {}

# RFC 3526 sections 2-7, "The prime is: 2^bits - 2^low - 1 + 2^64 * { [2^shift pi] + add }"
# (g = 2): the primes are computed from these formulas, so the script needs no
# file; --self-test also checks them against the RFC's hexadecimal values when
# rfc3526.txt is at hand.
RFC3526_FORMULAS = {
    5: (1536, 1472, 1406, 741804),
    14: (2048, 1984, 1918, 124476),
    15: (3072, 3008, 2942, 1690314),
    16: (4096, 4032, 3966, 240904),
    17: (6144, 6080, 6014, 929484),
    18: (8192, 8128, 8062, 4743158),
}


def modp_group(gid, check="modp"):
    """XEP-0116 'ESession Request': the MODP group number names an RFC 3526 (p, g)."""
    require(gid in RFC3526_FORMULAS, check, f"group {gid} is not an RFC 3526 group")
    if gid not in _GROUPS:
        bits, low, shift, add = RFC3526_FORMULAS[gid]
        p = 2 ** bits - 2 ** low - 1 + 2 ** 64 * (machin_pi_floor(shift) + add)
        _GROUPS[gid] = (p, 2)
    return _GROUPS[gid]


def dh_secret(public, exponent, p):
    """XEP-0116 'Diffie-Hellman Preparation': K = HASH(e^y mod p) = HASH(d^x mod p)."""
    return sha256(mpi(pow(public, exponent, p)))


# ---------------------------------------------------------------- keys and secrets

def session_keys(k, who, reading, cipher_key_bytes):
    """XEP-0116 'Generating Session Keys': KC = HMAC(HASH, K, "<who> Cipher Key"),
    KM = ... "<who> MAC Key", KS = ... "<who> SIGMA Key".  "As many bits of key data as are
    needed for each key MUST be taken from the least significant bits of the HMAC output"
    (spec reading); the gajim reading keeps all 32 bytes of KC (AES-256)."""
    kc = hmac256(k, (who + " Cipher Key").encode())
    if reading == "spec":
        kc = kc[-cipher_key_bytes:]
    return {"kc": kc, "km": hmac256(k, (who + " MAC Key").encode()),
            "ks": hmac256(k, (who + " SIGMA Key").encode())}


def final_secret(k, srs, oss):
    """XEP-0116 'Generating Bob's/Alice's Final Session Keys': K = HASH(K | SRS | OSS)."""
    return sha256(k + srs + oss)


def new_retained_secret(k_final):
    """XEP-0116 'Sending Bob's Identity': HMAC(HASH, K, "New Retained Secret")."""
    return hmac256(k_final, b"New Retained Secret")


def rshash(n_a, secret):
    """XEP-0116 'Sending Alice's Identity': HMAC of a retained secret with the key N_A."""
    return hmac256(n_a, secret)


def srshash(srs):
    """XEP-0116 'Sending Bob's Identity': HMAC(HASH, SRS, "Shared Retained Secret")."""
    return hmac256(srs, b"Shared Retained Secret")


def counter_b(c_a):
    """XEP-0116 'Diffie-Hellman Preparation (Bob)': C_B = C_A XOR 2^(n-1), n = 128."""
    return c_a ^ (1 << 127)


def sas_digits(value, pad):
    """XEP-0116 'The sas28x5 SAS Algorithm' step 3: base-28 with the digits
    acdefghikmopqruvwxy123456789, most significant first; 5 characters (spec), unpadded (gajim)."""
    out = ""
    while True:
        value, digit = divmod(value, 28)
        out = SAS_DIGITS[digit] + out
        if value == 0:
            break
    return out.rjust(5, SAS_DIGITS[0]) if pad else out


def sas28x5(m_a, form_b, reading):
    """XEP-0116 'The sas28x5 SAS Algorithm' steps 1-2: HASH(M_A | formB | "Short
    Authentication String"), least significant 24 bits."""
    digest = sha256(m_a + form_b + b"Short Authentication String")
    return sas_digits(int.from_bytes(digest[-3:], "big"), reading == "spec")


# ---------------------------------------------------------------- XML normalization

def local(tag):
    return tag.rsplit("}", 1)[-1]


def is_ws(text):
    return text is None or text.strip(XML_WS) == ""


def xml_escape(text):
    """Serializing character data: & < > escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def c14n_text(text):
    """C14N text node escaping: & < > and CR."""
    return xml_escape(text).replace("\r", "&#xD;")


def c14n_attr(value):
    """C14N attribute value escaping: & < " TAB LF CR."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\t", "&#x9;").replace("\n", "&#xA;").replace("\r", "&#xD;"))


def attr_name(key):
    if key.startswith("{"):
        uri, name = key[1:].split("}", 1)
        require(uri == NS_XML, "normalization", f"namespaced attribute {key}")
        return "xml:" + name
    return key


def c14n_element(el, reading):
    """XEP-0116 'XML Normalization': canonical form without namespace declarations or
    prefixes, attributes sorted and double-quoted, character data between elements removed
    (whitespace-only text next to child elements), text of leaf elements kept exactly.
    Empty elements: start-end pair (spec) or '<name />' (gajim)."""
    attrs = "".join(f' {k}="{c14n_attr(v)}"'
                    for k, v in sorted((attr_name(k), v) for k, v in el.attrib.items()))
    children = list(el)
    inner = ""
    if el.text and (not children or not is_ws(el.text)):
        inner += c14n_text(el.text)
    for child in children:
        inner += c14n_element(child, reading)
        if not is_ws(child.tail):
            inner += c14n_text(child.tail)
    name = local(el.tag)
    if inner == "" and reading == "gajim":
        return f"<{name}{attrs} />"
    return f"<{name}{attrs}>{inner}</{name}>"


def normalize_form(x, reading, drop=("identity", "mac")):
    """XEP-0116 'Hiding Bob's Identity' step 2: formX = the Normalized *content* of the data
    form as received (its <field/> children, in order), without 'identity' and 'mac'."""
    return "".join(c14n_element(f, reading) for f in x
                   if local(f.tag) == "field" and f.get("var") not in drop).encode("utf-8")


def form_fields(x):
    """Data form fields by var: the <value/> texts and the values of the <option/>s."""
    fields = {}
    for f in x:
        if local(f.tag) == "field":
            values = [v.text or "" for v in f if local(v.tag) == "value"]
            options = [(o.findtext(f"{{{NS_DATA}}}value") or "") for o in f
                       if local(o.tag) == "option"]
            fields[f.get("var")] = (values, options)
    return fields


def single(fields, var, msg):
    require(var in fields, f"{msg}.{var}", "field missing")
    values = fields[var][0]
    require(len(values) == 1, f"{msg}.{var}", f"expected one <value/>, got {len(values)}")
    return values[0].strip(XML_WS)


def choice(fields, var, msg, offer):
    """The responder's choice (one value in message 2), else Alice's single fixed value."""
    if var in fields:
        return single(fields, var, msg)
    values, options = offer.get(var, ([], []))
    choices = options or values
    require(len(choices) == 1, f"{msg}.{var}", "field missing and no single fixed value offered")
    return choices[0].strip(XML_WS)


# ---------------------------------------------------------------- counter mode and MACs

class CtrStream:
    """One direction's cipher state.  Spec reading (XEP-0116 'Hiding Bob's Identity' step 6,
    XEP-0200 'Encrypting a Stanza' step 3): the first block is encrypted under C, and "C MUST
    be incremented by 1 for each encrypted block or partial block".  Gajim reading: the
    keystream for counter value C starts at block C+1, unused keystream of a partial block is
    carried into the next encryption under the same key, the counter advances by the number of
    new blocks.  Counters are never reset; a key switch drops the carried keystream only."""

    def __init__(self, key, counter, reading):
        self.key, self.counter, self.reading, self.carry = key, counter, reading, b""

    def switch_key(self, key):
        self.key, self.carry = key, b""

    def _keystream(self, first, count):
        blocks = b"".join(((first + i) % MOD128).to_bytes(BLOCK, "big") for i in range(count))
        enc = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()
        return enc.update(blocks) + enc.finalize()

    def crypt(self, data):
        """Encrypt or decrypt `data`; returns (output, counter value before)."""
        before = self.counter
        if self.reading == "spec":
            nblocks = -(-len(data) // BLOCK)
            stream = self._keystream(before, nblocks)
        else:
            stream, self.carry = self.carry[:len(data)], self.carry[len(data):]
            need = len(data) - len(stream)
            nblocks = -(-need // BLOCK)
            if nblocks:
                fresh = self._keystream(before + 1, nblocks)
                stream, self.carry = stream + fresh[:need], fresh[need:]
        self.counter = (before + nblocks) % MOD128
        return bytes(a ^ b for a, b in zip(data, stream)), before


def identity_mac(km, c, id_bytes):
    """XEP-0116 'Hiding Bob's Identity' step 7: M = HMAC(HASH, KM, C, ID), C before encrypting."""
    return hmac256(km, mpi(c) + id_bytes)


def stanza_mac(km, m_content, c):
    """XEP-0200 'Encrypting a Stanza' step 5: a_mac = HMAC(HASH, KM, m_content | C)."""
    return hmac256(km, m_content + mpi(c))


def sigma_mac(ks, *parts):
    """XEP-0116 'Hiding Bob's Identity' step 3 / 'Hiding Alice's Identity':
    macB = HMAC(HASH, KS_B, {N_A, N_B, d, pubKey_B, formB[, formB2]}),
    macA = HMAC(HASH, KS_A, {N_B, N_A, e, pubKey_A, formA, formA2})."""
    return hmac256(ks, b"".join(parts))


def split_identity(plain, check):
    """XEP-0116 'Hiding Bob's Identity' step 6 (mode 'key'): the plaintext is
    {pubKey, sign} = <KeyValue>...</KeyValue><SignatureValue>B64</SignatureValue>."""
    m = re.fullmatch(rb"\s*(<KeyValue(?:\s[^>]*)?>.*?</KeyValue>)\s*"
                     rb"<SignatureValue(?:\s[^>]*)?>([^<]*)</SignatureValue>\s*", plain, re.S)
    require(m is not None, check, "identity plaintext is not <KeyValue/><SignatureValue/>")
    return m.group(1), b64d(m.group(2).decode("ascii"), check)


def verify_rsa(keyvalue, signature, mac, check):
    """XEP-0116 'Verifying Bob's Identity' step 8: VERIFY(sign, pubKey, mac), here
    xmldsig#rsa-sha256 = RSASSA-PKCS1-v1_5 with SHA-256 over the HMAC result."""
    try:
        root = ET.fromstring(keyvalue.decode("utf-8"))
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise CheckFailed(check, f"KeyValue does not parse: {exc}") from None
    parts = {local(el.tag): (el.text or "") for el in root.iter()}
    require("Modulus" in parts and "Exponent" in parts, check, "no RSAKeyValue Modulus/Exponent")
    n = int.from_bytes(b64d(parts["Modulus"], check), "big")
    e = int.from_bytes(b64d(parts["Exponent"], check), "big")
    try:
        rsa.RSAPublicNumbers(e, n).public_key().verify(
            signature, mac, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise CheckFailed(check, "RSA PKCS#1 v1.5 SHA-256 signature does not verify") from None


def pad_plaintext(text, reading):
    """XEP-0200 'Encrypting a Stanza' step 1 (decision): pad with spaces to a multiple of 16
    bytes (spec) or of 16 characters before UTF-8 encoding (gajim)."""
    if reading == "spec":
        data = text.encode("utf-8")
        return data + b" " * (-len(data) % BLOCK)
    return (text + " " * (-len(text) % BLOCK)).encode("utf-8")


def m_content(c_el, check):
    """XEP-0200 'Encrypting a Stanza' step 4: the content of <c/> without <mac/>, with all
    character data between elements removed: <name>text</name> for each child, in order."""
    out = ""
    for child in c_el:
        name = local(child.tag)
        require(name not in ("key", "new", "old"), check,
                f"<{name}/> in <c/>: rekey / MAC publishing is not covered")
        if name != "mac":
            out += f"<{name}>{(child.text or '').strip(XML_WS)}</{name}>"
    return out.encode("utf-8")


# ---------------------------------------------------------------- one transcript

def classify(stanzas):
    """Find the negotiation messages by content (XEP-0116 examples) and the <c/> stanzas."""
    neg, prot = {}, []
    kinds = {(NS_FEATURE, "form"): 1, (NS_FEATURE, "submit"): 2,
             (NS_FEATURE, "result"): 3, (NS_INIT, "result"): 4}
    senders = {1: "initiator", 2: "responder", 3: "initiator", 4: "responder"}
    for i, st in enumerate(stanzas):
        try:
            root = ET.fromstring(st["xml"])
        except ET.ParseError as exc:
            raise CheckFailed(f"stanza[{i}]", f"XML does not parse: {exc}") from None
        for wrapper in root:
            x = wrapper.find(f"{{{NS_DATA}}}x")
            ns = wrapper.tag[1:].split("}")[0] if wrapper.tag.startswith("{") else ""
            kind = kinds.get((ns, x.get("type") if x is not None else None))
            if kind and local(wrapper.tag) in ("feature", "init"):
                require(kind not in neg, f"message{kind}", f"second message {kind} at stanza {i}")
                require(st["from"] == senders[kind], f"message{kind}", f"sent by {st['from']}")
                neg[kind] = (i, x, form_fields(x))
        cs = [ch for ch in root if ch.tag == f"{{{NS_C}}}c"]
        require(len(cs) <= 1, f"stanza[{i}]", "more than one <c/>")
        if cs:
            prot.append((i, st["from"], cs[0]))
    return neg, prot


def b64_field(fields, var, msg):
    return b64d(single(fields, var, msg), f"{msg}.{var}")


def int_field(fields, var, msg):
    return mpi_decode(b64_field(fields, var, msg), f"{msg}.{var}")


def check_identity(who, keys, stream, fields, msg, pubkey_mode, mac_parts):
    """XEP-0116 'Verifying Bob's Identity' steps 1-8: check M = HMAC(KM, C | ID), decrypt ID
    at C, then compare the recomputed mac (mode 'none') or VERIFY its signature (mode 'key')."""
    id_bytes, m_rx = b64_field(fields, "identity", msg), b64_field(fields, "mac", msg)
    require(hmac.compare_digest(identity_mac(keys["km"], stream.counter, id_bytes), m_rx),
            msg + ".M", f"identity MAC M_{who} does not verify")
    plain, _ = stream.crypt(id_bytes)
    if pubkey_mode == "none":
        mac = sigma_mac(keys["ks"], *mac_parts(b""))
        require(hmac.compare_digest(plain, mac), msg + ".mac",
                f"decrypted identity is not the recomputed mac{who}")
    else:
        require(pubkey_mode == "key", msg, f"pubkey mode {pubkey_mode!r} not covered")
        keyvalue, signature = split_identity(plain, msg + ".identity")
        mac = sigma_mac(keys["ks"], *mac_parts(keyvalue))
        verify_rsa(keyvalue, signature, mac, msg + ".signature")
    return mac, m_rx, plain


def shared_retained_secret(held, n_a, f3, srs_rx):
    """XEP-0116 'Generating Bob's/Alice's Final Session Keys': Bob finds the SRS whose
    HMAC keyed with N_A is among 'rshashes'; Alice finds the one whose HMAC of "Shared
    Retained Secret" is 'srshash'.  Both sides hold `held`; returns (SRS, report)."""
    expected = rshash(n_a, held)
    found = any(b64d(v, "message3.rshashes") == expected
                for v in f3.get("rshashes", ([], []))[0])
    matched = hmac.compare_digest(srshash(held), srs_rx)
    require(found == matched, "retained secret", f"rshash found={found} but srshash "
            f"matched={matched}: the two sides would disagree on the SRS")
    report = {"rshash_hex": expected.hex(), "rshash_found": found, "srs_matched": matched}
    return (held if matched else b""), report


def open_stanza(c_el, stream, keys, reading, check):
    """XEP-0200 'Decrypting a Stanza' steps 2-4: verify HMAC(KM, m_content | C), decrypt."""
    content = m_content(c_el, check)
    data_el, mac_el = c_el.find(f"{{{NS_C}}}data"), c_el.find(f"{{{NS_C}}}mac")
    require(data_el is not None and mac_el is not None, check, "<c/> lacks <data/> or <mac/>")
    data = b64d(data_el.text or "", check + ".data")
    require(len(data) > 0, check, "empty <data/> is not covered")
    require(hmac.compare_digest(stanza_mac(keys["km"], content, stream.counter),
                                b64d(mac_el.text or "", check + ".mac")),
            check + ".mac", "stanza MAC does not verify")
    plain, before = stream.crypt(data)
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckFailed(check + ".utf8", "decrypted content is not UTF-8") from None
    unit = (len(plain), "bytes") if reading == "spec" else (len(text), "characters")
    require(unit[0] % BLOCK == 0, check + ".padding",
            f"plaintext is {unit[0]} {unit[1]}, not a multiple of 16")
    return {"counter_hex": f"{before:032x}", "plaintext": text,
            "counter_after_hex": f"{stream.counter:032x}"}


def make_stanza(stream, keys, text, reading):
    """XEP-0200 'Encrypting a Stanza' and 'Sending an Encrypted Stanza': the next <c/>."""
    cipher, before = stream.crypt(pad_plaintext(text, reading))
    data = b64e(cipher)
    mac = stanza_mac(keys["km"], f"<data>{data}</data>".encode(), before)
    return f"<c xmlns='{NS_C}'><data>{data}</data><mac>{b64e(mac)}</mac></c>"


def run_case(case, retained):
    """Verify one transcript and derive every value of the output record."""
    reading, mode = case["reading"], case["mode"]
    require(reading in ("spec", "gajim") and mode in (3, 4), "input", "bad reading or mode")
    neg, prot = classify(case["stanzas"])
    for kind in (1, 2, 3, 4)[:mode]:
        require(kind in neg, f"message{kind}", "negotiation message not found")
    (_, x1, f1), (_, x2, f2), (_, x3, f3) = neg[1], neg[2], neg[3]

    # Messages 1-3: nonces, negotiated options, counter, DH values and the commitment.
    n_a, n_b = b64_field(f1, "my_nonce", "message1"), b64_field(f2, "my_nonce", "message2")
    require(b64_field(f2, "nonce", "message2") == n_a, "message2.nonce", "does not echo N_A")
    require(b64_field(f3, "nonce", "message3") == n_b, "message3.nonce", "does not echo N_B")
    require("modp" in f1, "message1.modp", "field missing")
    offered = [v.strip(XML_WS) for v in (f1["modp"][1] or f1["modp"][0])]
    chosen = single(f2, "modp", "message2")
    require(chosen in offered, "message2.modp", f"group {chosen} was not offered")
    p, g = modp_group(int(chosen))
    hash_alg = choice(f2, "hash_algs", "message2", f1)
    require(hash_alg == "sha256", "message2.hash_algs", f"{hash_alg!r} not covered")
    crypt_alg = choice(f2, "crypt_algs", "message2", f1)
    require(crypt_alg in CIPHER_KEY_BYTES, "message2.crypt_algs", f"{crypt_alg!r} not covered")
    init_pk = choice(f2, "init_pubkey", "message2", f1)
    resp_pk = choice(f2, "resp_pubkey", "message2", f1)
    c_a = int_field(f2, "counter", "message2")
    require(c_a < MOD128, "message2.counter", "C_A is wider than 128 bits")
    c_b = counter_b(c_a)

    x, y = int(case["initiator_exponent_hex"], 16), int(case["responder_exponent_hex"], 16)
    d = int_field(f2, "dhkeys", "message2")
    require(1 < d < p - 1 and d == pow(g, y, p), "message2.dhkeys", "d != g^y mod p")
    idx = offered.index(chosen)
    committed = f1.get("dhhashes" if mode == 4 else "dhkeys", ([], []))[0]
    require(len(committed) == len(offered), "message1", "need one dhhashes/dhkeys per group")
    if mode == 4:
        e = int_field(f3, "dhkeys", "message3")
        require(sha256(mpi(e)) == b64d(committed[idx], "message1.dhhashes"),
                "commitment", "SHA256(e) differs from the committed He")
    else:
        e = mpi_decode(b64d(committed[idx], "message1.dhkeys"), "message1.dhkeys")
    require(1 < e < p - 1 and e == pow(g, x, p), "e", "e != g^x mod p")
    if not (1 << 255) < x < p - 1 or not (1 << 255) < y < p - 1:
        print(f"esessions_kat: warning: case {case['name']!r}: an exponent is outside "
              "2^(2n-1) < x < p-1", file=sys.stderr)

    k = dh_secret(d, x, p)
    require(k == dh_secret(e, y, p), "K", "g^xy differs between the two sides")
    klen = CIPHER_KEY_BYTES[crypt_alg]
    prov_a = session_keys(k, "Initiator", reading, klen)
    prov_b = session_keys(k, "Responder", reading, klen)
    form_a, form_b, form_a2 = (normalize_form(xf, reading) for xf in (x1, x2, x3))
    stream_a = CtrStream(prov_a["kc"], c_a, reading)
    out = {"name": case["name"], "group": int(chosen), "k_hex": k.hex(),
           "c_a_hex": f"{c_a:032x}", "c_b_hex": f"{c_b:032x}", "form_a": form_a.decode(),
           "form_b": form_b.decode(), "form_a2": form_a2.decode(), "form_b2": None,
           "sas": None, "k_final_hex": None, "rshash_hex": None, "rshash_found": False,
           "srs_matched": False, "srshash_hex": None, "new_retained_secret_hex": None}

    def parts_a(pubkey):
        return n_b, n_a, mpi(e), pubkey, form_a, form_a2

    if mode == 3:
        # SIGMA-I: Bob's identity in message 2 (at C_B), Alice's in message 3 (at C_A).
        fin_a, fin_b = prov_a, prov_b
        stream_b = CtrStream(prov_b["kc"], c_b, reading)
        mac_b, m_b, plain_b = check_identity("B", prov_b, stream_b, f2, "message2", resp_pk,
                                             lambda pk: (n_a, n_b, mpi(d), pk, form_b))
        mac_a, m_a, plain_a = check_identity("A", prov_a, stream_a, f3, "message3", init_pk,
                                             parts_a)
    else:
        # SIGMA-R: Alice's identity under the provisional keys, then K' and Bob's identity.
        _, x4, f4 = neg[4]
        require(b64_field(f4, "nonce", "message4") == n_a, "message4.nonce", "does not echo N_A")
        mac_a, m_a, plain_a = check_identity("A", prov_a, stream_a, f3, "message3", init_pk,
                                             parts_a)
        srs_rx = b64_field(f4, "srshash", "message4")
        out["srshash_hex"] = srs_rx.hex()
        srs = b""
        if case.get("retained_from") is not None:
            held = retained.get(case["retained_from"])
            require(held is not None, "retained_from", f"no retained secret from "
                    f"{case['retained_from']!r} (unknown, later, or 3-message case)")
            srs, report = shared_retained_secret(held, n_a, f3, srs_rx)
            out.update(report)
        k_final = final_secret(k, srs, (case.get("oss") or "").encode("utf-8"))
        fin_a = session_keys(k_final, "Initiator", reading, klen)
        fin_b = session_keys(k_final, "Responder", reading, klen)
        stream_a.switch_key(fin_a["kc"])
        stream_b = CtrStream(fin_b["kc"], c_b, reading)
        form_b2 = normalize_form(x4, reading)
        mac_b, m_b, plain_b = check_identity(
            "B", fin_b, stream_b, f4, "message4", resp_pk,
            lambda pk: (n_a, n_b, mpi(d), pk, form_b, form_b2))
        retained[case["name"]] = new_retained_secret(k_final)
        out.update(k_final_hex=k_final.hex(), form_b2=form_b2.decode(),
                   sas=sas28x5(m_a, form_b, reading),
                   new_retained_secret_hex=retained[case["name"]].hex())

    out.update(mac_a_hex=mac_a.hex(), mac_b_hex=mac_b.hex(), m_a_hex=m_a.hex(),
               m_b_hex=m_b.hex(), identity_a_plaintext_hex=plain_a.hex(),
               identity_b_plaintext_hex=plain_b.hex(),
               keys={name: {k: v.hex() for k, v in ks.items()} for name, ks in (
                   ("initiator_provisional", prov_a), ("responder_provisional", prov_b),
                   ("initiator", fin_a), ("responder", fin_b))})

    # XEP-0200: protected stanzas in order, each direction with its own counter, then what
    # each side would send next (<body>reply</body>) so the Rust side can decrypt it.
    sides = {"initiator": (stream_a, fin_a), "responder": (stream_b, fin_b)}
    out["protected"], out["made"] = [], []
    for i, sender, c_el in prot:
        require(i >= neg[mode][0], f"stanza[{i}]", "protected before the negotiation completed")
        opened = open_stanza(c_el, *sides[sender], reading, f"stanza[{i}]")
        out["protected"].append(dict(opened, index=i, **{"from": sender}))
    for sender in ("initiator", "responder"):
        if sender in case.get("replies", {}):
            body = "<body>" + xml_escape(case["replies"][sender]) + "</body>"
            out["made"].append({"from": sender, "plaintext": body,
                                "c_xml": make_stanza(*sides[sender], body, reading)})
    return out


# ---------------------------------------------------------------- self-test

def machin_pi_floor(shift):
    """floor(2^shift * pi) by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239)."""
    guard = 64
    one = 1 << (shift + guard)

    def atan_inv(xv):
        total, term, n, sign = 0, one // xv, 1, 1
        while term:
            total += sign * (term // n)
            term //= xv * xv
            n, sign = n + 2, -sign
        return total
    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> guard


def self_test():
    """Hand-checkable pieces; each assert names what the spec says."""
    # Multiple-Precision Integers: minimal big-endian, no leading zero octets.
    assert mpi(1) == b"\x01" and mpi(255) == b"\xff" and mpi(256) == b"\x01\x00"
    assert mpi(0x00ABCDEF) == b"\xab\xcd\xef" and mpi(0) == b""
    assert len(mpi(1 << 127)) == 16 and mpi_decode(b"\x01\x00", "t") == 256
    try:
        mpi_decode(b"\x00\x01", "t")
        raise AssertionError("non-minimal integer accepted")
    except CheckFailed:
        pass
    # C_B = C_A XOR 2^(n-1), n = 128.
    assert counter_b(1) == 0x80000000000000000000000000000001
    assert counter_b(0xF0000000000000000000000000000000) == 0x70000000000000000000000000000000
    assert counter_b(counter_b(12345)) == 12345
    # sas28x5 digits: 0 -> 'a', 27 -> '9', 28 -> 'ca'; 2^24-1 = [27, 8, 7, 14, 7] in base 28.
    assert sas_digits(0, True) == "aaaaa" and sas_digits(0, False) == "a"
    assert sas_digits(27, True) == "aaaa9" and sas_digits(28, False) == "ca"
    assert sas_digits(2 ** 24 - 1, True) == "9kiui" == sas_digits(2 ** 24 - 1, False)
    assert sas_digits(28 ** 4, True) == "caaaa" and 28 ** 5 > 2 ** 24
    # C14N escaping (text: & < > CR; attributes: & < " TAB LF CR).
    assert c14n_text('a&b<c>d\r"\'') == 'a&amp;b&lt;c&gt;d&#xD;"\''
    assert c14n_attr('a&b<c>"\t\n\r\'') == "a&amp;b&lt;c>&quot;&#x9;&#xA;&#xD;'"
    form = ET.fromstring(
        "<x xmlns='jabber:x:data' type='form'>\n <title>t</title>\n"
        " <field var='modp' type='list-single'>\n  <required/>\n"
        "  <option label='a&amp;&quot;'><value> 14 </value></option>\n </field>\n"
        " <field var='mac'><value>m</value></field>\n <field var='v'><value/></field></x>")
    assert normalize_form(form, "spec") == (
        b'<field type="list-single" var="modp"><required></required>'
        b'<option label="a&amp;&quot;"><value> 14 </value></option></field>'
        b'<field var="v"><value></value></field>')
    assert normalize_form(form, "gajim") == (
        b'<field type="list-single" var="modp"><required />'
        b'<option label="a&amp;&quot;"><value> 14 </value></option></field>'
        b'<field var="v"><value /></field>')
    # Counter mode: NIST SP 800-38A F.5.1 (CTR-AES128), then the gajim one-block shift and carry.
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = 0xF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF
    pt = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = bytes.fromhex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff")
    s = CtrStream(key, iv, "spec")
    assert s.crypt(pt[:20]) == (ct[:20], iv) and s.counter == iv + 2
    g = CtrStream(key, iv - 1, "gajim")
    assert g.crypt(pt[:20]) == (ct[:20], iv - 1) and g.counter == iv + 1
    assert g.crypt(pt[20:]) == (ct[20:], iv + 1) and g.counter == iv + 1 and g.carry == b""
    w = CtrStream(key, MOD128 - 1, "spec")
    w.crypt(b"x" * 17)
    assert w.counter == 1                       # (C + 1) mod 2^n
    # Key derivation: the cipher key is the 16 least significant bytes (spec) or all 32.
    full = hmac256(b"k", b"Initiator Cipher Key")
    assert session_keys(b"k", "Initiator", "spec", 16)["kc"] == full[16:]
    assert session_keys(b"k", "Initiator", "gajim", 16)["kc"] == full
    # Padding to 16 bytes (spec) or 16 characters (gajim); "é" is two UTF-8 bytes.
    assert len(pad_plaintext("é" * 8, "spec")) == 16
    assert len(pad_plaintext("é" * 8, "gajim")) == 24
    # m_content is <name>trimmed text</name> without <mac/>.
    c = ET.fromstring(f"<c xmlns='{NS_C}'>\n <data> QUJD </data>\n <mac>x</mac></c>")
    assert m_content(c, "t") == b"<data>QUJD</data>"
    # RFC 3526: the primes from the pi formulas equal the RFC's hexadecimal values; g = 2.
    if os.path.exists(RFC3526_PATH):
        with open(RFC3526_PATH, encoding="ascii") as f:
            text = parse_rfc3526(f.read())
        assert sorted(text) == sorted(RFC3526_FORMULAS)
        for gid, (p, gen, formula) in text.items():
            assert gen == 2 and p.bit_length() == formula[0], gid
            assert formula == RFC3526_FORMULAS[gid], gid
            assert modp_group(gid) == (p, 2), gid
    else:
        print(f"self-test: {RFC3526_PATH} absent, primes not compared with its hex", file=sys.stderr)
    for gid in RFC3526_FORMULAS:
        assert modp_group(gid)[0].bit_length() == RFC3526_FORMULAS[gid][0]
    print("self-test: all checks passed")


def main(argv):
    if argv[1:] == ["--self-test"]:
        if not __debug__:
            print("--self-test needs asserts: run without python -O", file=sys.stderr)
            return 2
        self_test()
        return 0
    if len(argv) != 2:
        print("usage: esessions_kat.py INPUT.json | --self-test", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    retained, results = {}, []
    for case in cases:
        try:
            results.append(run_case(case, retained))
        except CheckFailed as exc:
            print(f"esessions_kat: case {case.get('name')!r}: {exc}", file=sys.stderr)
            return 1
    sys.stdout.write(json.dumps({"cases": results}, sort_keys=True, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
