//! The little of Hessian 2 that routing needs: strings (and null) at the front of a Dubbo
//! request body. A bounded reader over a byte slice; it never reads past the slice, never
//! allocates more than the slice's size, and never panics.
//!
//! Hessian 2 strings (Hessian 2.0 serialization spec, "string"): `0x00..=0x1f` a string of
//! 0-31 characters; `0x30..=0x33` plus one byte, up to 1023 characters; `S` (0x53) a final
//! chunk and `R` (0x52) a non-final chunk, each with a 16-bit length. Lengths count UTF-16
//! code units, encoded as (modified) UTF-8; `N` (0x4e) is null.

/// Why a value could not be read.
pub(crate) type Error = &'static str;

/// A cursor over a Hessian 2 byte string.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Consume `b` if it is the next byte.
    pub(crate) fn take(&mut self, b: u8) -> bool {
        if self.buf.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or("hessian: truncated value")?;
        self.pos += 1;
        Ok(b)
    }

    /// Read a string or null.
    pub(crate) fn string(&mut self) -> Result<Option<String>, Error> {
        let mut out = Vec::new();
        loop {
            let tag = self.byte()?;
            let (len, last) = match tag {
                0x00..=0x1f => (usize::from(tag), true),
                0x30..=0x33 => (
                    usize::from(tag - 0x30) << 8 | usize::from(self.byte()?),
                    true,
                ),
                b'S' | b'R' => {
                    let hi = usize::from(self.byte()?);
                    let lo = usize::from(self.byte()?);
                    (hi << 8 | lo, tag == b'S')
                }
                b'N' if out.is_empty() => return Ok(None),
                _ => return Err("hessian: expected a string"),
            };
            self.chars(len, &mut out)?;
            if last {
                break;
            }
        }
        Ok(Some(match String::from_utf8(out) {
            Ok(s) => s,
            // Surrogate pairs written as two 3-byte sequences (Java's modified UTF-8).
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }))
    }

    /// Copy `units` UTF-16 code units of UTF-8 into `out`.
    fn chars(&mut self, units: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut left = units;
        while left > 0 {
            let lead = *self.buf.get(self.pos).ok_or("hessian: truncated string")?;
            let (n, counted) = match lead {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                0xf0..=0xf7 => (4, 2),
                _ => return Err("hessian: bad UTF-8 in string"),
            };
            let end = self.pos + n;
            let bytes = self
                .buf
                .get(self.pos..end)
                .ok_or("hessian: truncated string")?;
            out.extend_from_slice(bytes);
            self.pos = end;
            left = left.saturating_sub(counted);
        }
        Ok(())
    }
}

/// Append `s` as a Hessian 2 string (for local replies and tests).
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    let units = s.encode_utf16().count();
    if units <= 31 {
        out.push(units as u8);
        out.extend_from_slice(s.as_bytes());
    } else if units <= 1023 {
        out.push(0x30 + (units >> 8) as u8);
        out.push(units as u8);
        out.extend_from_slice(s.as_bytes());
    } else {
        // Chunks of at most 0xffff units, split on char boundaries.
        let mut chunk = String::new();
        let mut n = 0usize;
        let mut chunks: Vec<(String, usize)> = Vec::new();
        for c in s.chars() {
            let w = c.len_utf16();
            if n + w > 0xffff {
                chunks.push((std::mem::take(&mut chunk), n));
                n = 0;
            }
            chunk.push(c);
            n += w;
        }
        chunks.push((chunk, n));
        let last = chunks.len() - 1;
        for (i, (c, n)) in chunks.iter().enumerate() {
            out.push(if i == last { b'S' } else { b'R' });
            out.extend_from_slice(&(*n as u16).to_be_bytes());
            out.extend_from_slice(c.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_spec_examples() {
        // Hessian 2.0 spec, string examples.
        assert_eq!(Reader::new(&[0x00]).string(), Ok(Some(String::new())));
        assert_eq!(
            Reader::new(&[0x05, b'h', b'e', b'l', b'l', b'o']).string(),
            Ok(Some("hello".into()))
        );
        assert_eq!(
            Reader::new(&[0x01, 0xc3, 0x83]).string(),
            Ok(Some("\u{c3}".into()))
        );
        assert_eq!(
            Reader::new(b"S\x00\x05hello").string(),
            Ok(Some("hello".into()))
        );
        assert_eq!(
            Reader::new(b"R\x00\x02heS\x00\x03llo").string(),
            Ok(Some("hello".into()))
        );
        assert_eq!(Reader::new(b"N").string(), Ok(None));
        assert!(Reader::new(&[0x05, b'h']).string().is_err());
        assert!(Reader::new(&[0x90]).string().is_err());
    }

    proptest! {
        #[test]
        fn write_then_read_is_identity(s in "\\PC{0,40}|[a-z.]{1000,1100}") {
            let mut out = Vec::new();
            write_string(&s, &mut out);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.string(), Ok(Some(s)));
            prop_assert_eq!(r.pos, out.len());
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&b);
            let _ = r.string();
            prop_assert!(r.pos <= b.len());
        }
    }
}
