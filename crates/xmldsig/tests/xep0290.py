"""Independent XEP-0290 computations for the xmlsec1 interop tests.

Written from XEP-0290 0.2 and W3C C14N, on lxml (libxml2's canonicalizer),
sharing no code with the crate:
  check FILE [inclusive]   recompute every <reference/> digest of the stanza
                           in FILE and compare with its manifest (exit 1 on
                           any mismatch, 0 and a count otherwise)
  template SIGNER FROM TO ID TYPE TIMESTAMP BODY PREFIX
                           print a stanza with a Signature template for
                           `xmlsec1 --sign`; PREFIX is "none" (default
                           namespaces) or "ds" (ds:-prefixed XML-DSig)
"""
import base64
import hashlib
import sys

from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
D = "urn:xmpp:dsig:0"
STREAM_OPEN = (b"<stream:stream xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams'>")
STREAM_CLOSE = b"</stream:stream>"


def child_digests(stanza_bytes, inclusive):
    # "normalized ... as a document subset of a document containing a stream
    # element containing the appropriate jabber:client stanza element"
    root = etree.fromstring(STREAM_OPEN + stanza_bytes + STREAM_CLOSE)
    stanza = root[0]
    out = {}
    for c in stanza:
        i = c.get("{%s}id" % D)
        if i is None:
            continue
        canon = etree.tostring(c, method="c14n", exclusive=not inclusive)
        out[i] = base64.b64encode(hashlib.sha256(canon).digest()).decode()
    return out


def check(path, inclusive):
    data = open(path, "rb").read()
    if data.startswith(b"<?xml"):
        data = data[data.index(b"?>") + 2:].lstrip()
    got = child_digests(data, inclusive)
    stanza = etree.fromstring(data)
    refs = stanza.findall(".//{%s}stanza-desc/*/{%s}reference" % (D, D))
    if not refs or len(refs) != len(got):
        print("references %d, children with d:id %d" % (len(refs), len(got)))
        return 1
    for r in refs:
        uri = r.get("URI")
        i = uri[len("urn:xmpp:dsig:ref:0#"):]
        if got.get(i) != r.text.strip():
            print("digest mismatch for %s: manifest %s, computed %s" % (uri, r.text, got.get(i)))
            return 1
    print("ok %d" % len(refs))
    return 0


def template(signer, frm, to, sid, typ, ts, body, prefix):
    p = "" if prefix == "none" else prefix + ":"
    decl = ('xmlns="%s"' % DS) if prefix == "none" else ('xmlns:%s="%s"' % (prefix, DS))
    children = '<body xmlns:d="%s" d:id="t-1">%s</body>' % (D, body)
    stanza = ('<message xmlns="jabber:client" from="%s" to="%s" id="%s" type="%s">%s</message>'
              % (frm, to, sid, typ, children))
    dig = child_digests(stanza.encode(), False)["t-1"]
    desc = ('<stanza-desc xmlns="%s" id="stanza-desc"><signer>%s</signer>'
            '<Transforms><Transform Algorithm="urn:xmpp:dsig:transform:0"/>'
            '<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms>'
            '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
            '<message from="%s" to="%s" id="%s" type="%s">'
            '<reference URI="urn:xmpp:dsig:ref:0#t-1">%s</reference></message>'
            '<timestamp>%s</timestamp></stanza-desc>'
            % (D, signer, signer, to, sid, typ, dig, ts))
    sig = ('<{p}Signature {decl}><{p}SignedInfo>'
           '<{p}CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
           '<{p}SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
           '<{p}Reference URI="#stanza-desc"><{p}Transforms>'
           '<{p}Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></{p}Transforms>'
           '<{p}DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
           '<{p}DigestValue></{p}DigestValue></{p}Reference></{p}SignedInfo>'
           '<{p}SignatureValue></{p}SignatureValue><{p}Object>{desc}</{p}Object></{p}Signature>'
           ).format(p=p, decl=decl, desc=desc)
    print(stanza.replace("</message>", sig + "</message>"))
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "check":
        sys.exit(check(a[1], len(a) > 2 and a[2] == "inclusive"))
    if a[0] == "template":
        sys.exit(template(*a[1:9]))
    sys.exit("usage: check FILE [inclusive] | template ...")
