//! The first flight of a TLS client, read without a TLS stack: whether the bytes are a TLS
//! ClientHello and, if so, the server name (SNI, RFC 6066 §3) and the ALPN protocols (RFC
//! 7301) it asks for. This is what the `tls_inspector` listener filter needs to choose a
//! filter chain before any handshake happens.
//!
//! The parser takes the bytes seen so far and answers from scratch each time: it needs no
//! state between calls, so the caller can peek at a socket (the bytes stay in the kernel for
//! the real handshake) and ask again when more have arrived. A ClientHello may be split over
//! several records (RFC 8446 §5.1) and the records over several reads; `NeedMore` says how many
//! bytes in total are needed before the answer can change, so a client trickling bytes costs
//! one parse per record, not one per byte. Nothing here allocates more than the input's size
//! or panics on any input.

/// Record content type `handshake` (RFC 8446 §5.1).
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake type `client_hello` (RFC 8446 §4).
const CLIENT_HELLO: u8 = 1;
/// Record header: type (1), legacy_record_version (2), length (2).
const RECORD_HEADER: usize = 5;
/// Largest plaintext record payload (2^14, RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;
/// Extension `server_name` (RFC 6066 §3).
const EXT_SERVER_NAME: u16 = 0;
/// Extension `application_layer_protocol_negotiation` (RFC 7301 §3.1).
const EXT_ALPN: u16 = 16;
/// Longest host name in `server_name` (RFC 6066 §3: `HostName<1..2^16-1>`, but DNS names stop
/// at 255 and TLS stacks reject longer ones).
const MAX_HOST_NAME: usize = 255;

/// What a ClientHello asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the `server_name` extension, when present.
    pub server_name: Option<String>,
    /// The ALPN protocol names in the client's order; empty when the extension is absent or
    /// malformed (a malformed list is left for the real handshake to reject, as Envoy does).
    pub alpn: Vec<String>,
    /// Whether the client sent an ALPN extension that parsed.
    pub alpn_present: bool,
    /// Bytes of the records that carry the ClientHello, headers included.
    pub consumed: usize,
}

/// The answer for the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Undecided: nothing new can be learnt before the input holds at least this many bytes.
    NeedMore(usize),
    /// A well-formed ClientHello.
    Hello(ClientHello),
    /// Not a TLS ClientHello (plaintext, another protocol, or a malformed ClientHello).
    NotTls {
        /// How many bytes were examined before deciding.
        at: usize,
        /// Why, for logs.
        reason: &'static str,
    },
}

fn not_tls(at: usize, reason: &'static str) -> Parse {
    Parse::NotTls { at, reason }
}

/// Parse the first bytes a client sent.
pub fn parse(buf: &[u8]) -> Parse {
    // The handshake message, reassembled from the record payloads seen so far.
    let mut message: Vec<u8> = Vec::new();
    // Bytes of the message still missing, once its header has been seen.
    let mut missing: Option<usize> = None;
    let mut offset = 0;
    loop {
        // Whatever comes next, at least one more record header and the missing bytes.
        let at_least = offset + RECORD_HEADER + missing.unwrap_or(0);
        let Some(header) = buf.get(offset..offset + RECORD_HEADER) else {
            // The first decision needs a whole record header, as a TLS stack reads one.
            return Parse::NeedMore(at_least);
        };
        if header[0] != CONTENT_HANDSHAKE {
            return not_tls(offset + 1, "not a handshake record");
        }
        if header[1] != 3 {
            return not_tls(offset + 2, "record version is not TLS");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return not_tls(offset + RECORD_HEADER, "empty handshake record");
        }
        if len > MAX_RECORD {
            return not_tls(offset + RECORD_HEADER, "record longer than 2^14 bytes");
        }
        let end = offset + RECORD_HEADER + len;
        let Some(payload) = buf.get(offset + RECORD_HEADER..end) else {
            // This record, then another header for what it cannot hold.
            return Parse::NeedMore(match missing {
                Some(m) if m > len => end + RECORD_HEADER + (m - len),
                _ => end,
            });
        };
        message.extend_from_slice(payload);
        offset = end;
        let Some(&[kind, a, b, c]) = message.get(..4) else {
            continue;
        };
        if kind != CLIENT_HELLO {
            return not_tls(offset, "first handshake message is not a ClientHello");
        }
        let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
        let Some(body) = message.get(4..4 + body_len) else {
            missing = Some(4 + body_len - message.len());
            continue;
        };
        return match parse_body(body) {
            Ok(mut hello) => {
                hello.consumed = offset;
                Parse::Hello(hello)
            }
            Err(reason) => not_tls(offset, reason),
        };
    }
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
fn parse_body(body: &[u8]) -> Result<ClientHello, &'static str> {
    let mut r = Reader(body);
    let version = r.u16().ok_or("truncated ClientHello")?;
    if version >> 8 != 3 || version < 0x0301 {
        return Err("ClientHello version older than TLS 1.0");
    }
    r.take(32).ok_or("truncated random")?;
    let session_id = r.vec8().ok_or("truncated session id")?;
    if session_id.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16().ok_or("truncated cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("malformed cipher suites");
    }
    let compression = r.vec8().ok_or("truncated compression methods")?;
    if compression.is_empty() {
        return Err("no compression method");
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        // A ClientHello without extensions (TLS 1.0 to 1.2).
        return Ok(hello);
    }
    let extensions = r.vec16().ok_or("truncated extensions")?;
    if !r.is_empty() {
        return Err("bytes after the extensions");
    }
    let mut r = Reader(extensions);
    let mut seen: Vec<u16> = Vec::new();
    while !r.is_empty() {
        let kind = r.u16().ok_or("truncated extension")?;
        let data = r.vec16().ok_or("truncated extension")?;
        if seen.contains(&kind) {
            return Err("duplicate extension");
        }
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => hello.server_name = Some(server_name(data)?),
            EXT_ALPN => {
                if let Some(list) = alpn(data) {
                    hello.alpn = list;
                    hello.alpn_present = true;
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// `server_name`: one `host_name` entry, 1 to 255 bytes, no NUL. TLS stacks read only one
/// entry and refuse lists with more, other name types or empty names; so does this.
fn server_name(data: &[u8]) -> Result<String, &'static str> {
    let mut r = Reader(data);
    let list = r.vec16().ok_or("malformed server_name")?;
    if !r.is_empty() {
        return Err("malformed server_name");
    }
    let mut r = Reader(list);
    let kind = r.u8().ok_or("malformed server_name")?;
    let name = r.vec16().ok_or("malformed server_name")?;
    if !r.is_empty() || kind != 0 {
        return Err("server_name is not one host_name");
    }
    if name.is_empty() || name.len() > MAX_HOST_NAME || name.contains(&0) {
        return Err("invalid host_name");
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// `application_layer_protocol_negotiation`: a non-empty list of non-empty names. A malformed
/// list yields `None`: the handshake, not the inspector, rejects it.
fn alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(data);
    let list = r.vec16()?;
    if !r.is_empty() || list.len() < 2 {
        return None;
    }
    let mut r = Reader(list);
    let mut out = Vec::new();
    while !r.is_empty() {
        let name = r.vec8()?;
        if name.is_empty() {
            return None;
        }
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(out)
}

/// A ClientHello in records, built for tests and fuzz seeds: `server_name` and `alpn` as
/// given, `padding` bytes of a padding extension (RFC 7685) to make it large, and records of
/// at most `record_size` payload bytes.
#[cfg(test)]
pub(crate) fn build(
    server_name: Option<&str>,
    alpn: &[&str],
    padding: usize,
    record_size: usize,
) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    let mut exts = Vec::new();
    if let Some(name) = server_name {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        ext(&mut exts, EXT_SERVER_NAME, &list);
    }
    if !alpn.is_empty() {
        let names: Vec<u8> = alpn
            .iter()
            .flat_map(|p| std::iter::once(p.len() as u8).chain(p.bytes()))
            .collect();
        let mut list = (names.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&names);
        ext(&mut exts, EXT_ALPN, &list);
    }
    if padding > 0 {
        ext(&mut exts, 21, &vec![0; padding]);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut message = vec![CLIENT_HELLO];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut out = Vec::new();
    for chunk in message.chunks(record_size.clamp(1, MAX_RECORD)) {
        out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests;
