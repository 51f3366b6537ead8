//! The little of Hessian 2 that routing needs: strings (and null) at the front of a Dubbo
//! request body, and skipping any value (the arguments before the attachments). A bounded reader over a byte slice; it never reads past the slice, never
//! allocates more than the slice's size, and never panics.
//!
//! Hessian 2 strings (Hessian 2.0 serialization spec, "string"): `0x00..=0x1f` a string of
//! 0-31 characters; `0x30..=0x33` plus one byte, up to 1023 characters; `S` (0x53) a final
//! chunk and `R` (0x52) a non-final chunk, each with a 16-bit length. Lengths count UTF-16
//! code units, encoded as (modified) UTF-8; `N` (0x4e) is null.

/// Values nest at most this deep in [`Reader::skip`].
const MAX_DEPTH: usize = 32;
/// Class definitions in one body at most.
const MAX_CLASSES: usize = 256;

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

    /// Read a string or null. On an error nothing is consumed.
    pub(crate) fn string(&mut self) -> Result<Option<String>, Error> {
        let start = self.pos;
        let s = self.string_inner();
        if s.is_err() {
            self.pos = start;
        }
        s
    }

    fn string_inner(&mut self) -> Result<Option<String>, Error> {
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

    fn bytes(&mut self, n: usize) -> Result<(), Error> {
        let end = self.pos.checked_add(n).ok_or("hessian: length overflow")?;
        if end > self.buf.len() {
            return Err("hessian: truncated value");
        }
        self.pos = end;
        Ok(())
    }

    /// An int (`I` and the compact forms).
    fn int(&mut self) -> Result<i64, Error> {
        let tag = self.byte()?;
        Ok(match tag {
            0x80..=0xbf => i64::from(tag) - 0x90,
            0xc0..=0xcf => ((i64::from(tag) - 0xc8) << 8) + i64::from(self.byte()?),
            0xd0..=0xd7 => {
                let b1 = i64::from(self.byte()?);
                let b0 = i64::from(self.byte()?);
                ((i64::from(tag) - 0xd4) << 16) + (b1 << 8) + b0
            }
            b'I' => {
                let mut v = [0u8; 4];
                for b in &mut v {
                    *b = self.byte()?;
                }
                i64::from(i32::from_be_bytes(v))
            }
            _ => return Err("hessian: expected an int"),
        })
    }

    /// A count that cannot exceed what is left to read (every value takes a byte at least).
    fn count(&mut self) -> Result<usize, Error> {
        let n = self.int()?;
        let left = self.buf.len() - self.pos;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= left)
            .ok_or("hessian: bad length")
    }

    /// A type: a string or a reference to an earlier type (an int).
    fn skip_type(&mut self) -> Result<(), Error> {
        match self.buf.get(self.pos) {
            Some(0x80..=0xbf | 0xc0..=0xd7 | b'I') => self.int().map(drop),
            _ => self.string().map(drop),
        }
    }

    /// Skip one value of any type, with the class definitions met so far (their field
    /// counts). Nesting deeper than [`MAX_DEPTH`] is an error.
    pub(crate) fn skip(&mut self, classes: &mut Vec<usize>) -> Result<(), Error> {
        self.skip_at(classes, 0)
    }

    fn skip_at(&mut self, classes: &mut Vec<usize>, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err("hessian: values nest too deep");
        }
        let tag = *self.buf.get(self.pos).ok_or("hessian: truncated value")?;
        match tag {
            0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => return self.string().map(drop),
            0x80..=0xbf | 0xc0..=0xd7 | b'I' => return self.int().map(drop),
            _ => {}
        }
        self.pos += 1;
        let items = |r: &mut Self, classes: &mut Vec<usize>, n: usize| {
            (0..n).try_for_each(|_| r.skip_at(classes, depth + 1))
        };
        let until_z = |r: &mut Self, classes: &mut Vec<usize>, per: usize| loop {
            if r.take(b'Z') {
                return Ok(());
            }
            items(r, classes, per)?;
        };
        match tag {
            b'N' | b'T' | b'F' | 0x5b | 0x5c | 0xd8..=0xef => Ok(()),
            0x5d | 0xf0..=0xff => self.bytes(1),
            0x5e | 0x38..=0x3f => self.bytes(2),
            0x5f | 0x59 | 0x4b => self.bytes(4),
            b'D' | b'L' | 0x4a => self.bytes(8),
            0x20..=0x2f => self.bytes(usize::from(tag - 0x20)),
            0x34..=0x37 => {
                let n = (usize::from(tag - 0x34) << 8) | usize::from(self.byte()?);
                self.bytes(n)
            }
            b'b' | b'B' => {
                let mut tag = tag;
                loop {
                    let hi = usize::from(self.byte()?);
                    let lo = usize::from(self.byte()?);
                    self.bytes(hi << 8 | lo)?;
                    if tag == b'B' {
                        return Ok(());
                    }
                    tag = self.byte()?;
                    if tag != b'b' && tag != b'B' {
                        return Err("hessian: bad binary chunk");
                    }
                }
            }
            0x51 => self.int().map(drop),
            b'C' => {
                self.string()?;
                let n = self.count()?;
                for _ in 0..n {
                    self.string()?;
                }
                if classes.len() >= MAX_CLASSES {
                    return Err("hessian: too many class definitions");
                }
                classes.push(n);
                // A definition comes before the value that uses it.
                self.skip_at(classes, depth + 1)
            }
            b'O' | 0x60..=0x6f => {
                let def = if tag == b'O' {
                    self.count()?
                } else {
                    usize::from(tag - 0x60)
                };
                let n = *classes.get(def).ok_or("hessian: unknown class")?;
                items(self, classes, n)
            }
            0x55 => {
                self.skip_type()?;
                until_z(self, classes, 1)
            }
            0x56 => {
                self.skip_type()?;
                let n = self.count()?;
                items(self, classes, n)
            }
            0x57 => until_z(self, classes, 1),
            0x58 => {
                let n = self.count()?;
                items(self, classes, n)
            }
            0x70..=0x77 => {
                self.skip_type()?;
                items(self, classes, usize::from(tag - 0x70))
            }
            0x78..=0x7f => items(self, classes, usize::from(tag - 0x78)),
            b'M' => {
                self.skip_type()?;
                until_z(self, classes, 2)
            }
            b'H' => until_z(self, classes, 2),
            _ => Err("hessian: unknown tag"),
        }
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

    #[test]
    fn skips_values_of_every_kind() {
        let cases: &[&[u8]] = &[
            b"N",
            b"T",
            &[0x90],
            &[0xc8, 0x01],
            &[0xd4, 0x01, 0x02],
            b"I\x00\x00\x01\x00",
            &[0xe0],
            b"L\x00\x00\x00\x00\x00\x00\x00\x01",
            &[0x5b],
            &[0x5f, 0, 0, 0, 1],
            b"D\x40\x28\x80\x00\x00\x00\x00\x00",
            &[0x4b, 0, 0, 0, 1],
            &[0x23, 1, 2, 3],
            b"b\x00\x01xB\x00\x02yz",
            // A typed fixed list of two ints, an untyped variable list, a map.
            &[0x72, 0x01, b'x', 0x90, 0x91],
            &[0x57, 0x90, 0x05, b'h', b'e', b'l', b'l', b'o', b'Z'],
            &[b'H', 0x01, b'k', 0x90, b'Z'],
            &[b'M', 0x01, b't', 0x01, b'k', b'N', b'Z'],
            // A class definition with two fields, then an instance.
            &[
                b'C', 0x03, b'C', b'a', b'r', 0x92, 0x01, b'a', 0x01, b'b', 0x60, 0x90, 0x01, b'x',
            ],
            &[0x51, 0x90],
        ];
        for v in cases {
            let mut r = Reader::new(v);
            let mut classes = Vec::new();
            assert_eq!(r.skip(&mut classes), Ok(()), "{v:02x?}");
            assert_eq!(r.pos, v.len(), "{v:02x?}");
        }
        // Truncated or unknown values are errors.
        for v in [
            &[0x72, 0x01, b'x', 0x90][..],
            &[0x60],
            &[0x58, 0xbf],
            &[0x41],
        ] {
            assert!(Reader::new(v).skip(&mut Vec::new()).is_err(), "{v:02x?}");
        }
        // Deep nesting is refused.
        let deep = [0x79u8; 100];
        assert!(Reader::new(&deep).skip(&mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_skip_without_panic(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut r = Reader::new(&b);
            let _ = r.skip(&mut Vec::new());
            prop_assert!(r.pos <= b.len());
        }

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
