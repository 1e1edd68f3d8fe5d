//! The binary protocol's framing: the 24-byte request and response
//! headers, the opcodes and status codes of memcached 1.6, and splitting a
//! body into extras, key and value. Pure: the server reads `HEADER_LEN`
//! bytes, asks [`Header::parse`] how long the body is (and refuses one
//! longer than it allows before reading it), then [`Header::split`]s it.
//!
//! ```text
//!  byte  0      1       2..4     4       5        6..8            8..12     12..16  16..24
//!       magic opcode key len  extras  datatype  vbucket/status  body len  opaque   cas
//!  (all numbers big-endian; body = extras, key, value)
//! ```
//!
//! Not wired into the server yet (issue 6): the per-opcode checks of
//! extras and key lengths, and the commands themselves, come with it.

/// First byte of a request.
pub const REQ_MAGIC: u8 = 0x80;
/// First byte of a response.
pub const RES_MAGIC: u8 = 0x81;
/// Bytes of either header.
pub const HEADER_LEN: usize = 24;

macro_rules! opcodes {
    ($($name:ident = $code:expr),* $(,)?) => {
        /// The opcodes memcached 1.6 answers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Opcode {
            $($name),*
        }

        impl Opcode {
            pub fn from_u8(b: u8) -> Option<Opcode> {
                match b {
                    $($code => Some(Opcode::$name),)*
                    _ => None,
                }
            }

            pub fn code(self) -> u8 {
                match self {
                    $(Opcode::$name => $code),*
                }
            }
        }
    };
}

opcodes! {
    Get = 0x00,
    Set = 0x01,
    Add = 0x02,
    Replace = 0x03,
    Delete = 0x04,
    Increment = 0x05,
    Decrement = 0x06,
    Quit = 0x07,
    Flush = 0x08,
    GetQ = 0x09,
    NoOp = 0x0a,
    Version = 0x0b,
    GetK = 0x0c,
    GetKQ = 0x0d,
    Append = 0x0e,
    Prepend = 0x0f,
    Stat = 0x10,
    SetQ = 0x11,
    AddQ = 0x12,
    ReplaceQ = 0x13,
    DeleteQ = 0x14,
    IncrementQ = 0x15,
    DecrementQ = 0x16,
    QuitQ = 0x17,
    FlushQ = 0x18,
    AppendQ = 0x19,
    PrependQ = 0x1a,
    Verbosity = 0x1b,
    Touch = 0x1c,
    Gat = 0x1d,
    GatQ = 0x1e,
    SaslListMechs = 0x20,
    SaslAuth = 0x21,
    SaslStep = 0x22,
    GatK = 0x23,
    GatKQ = 0x24,
}

impl Opcode {
    /// The quiet variants: their misses (gets) or successes (the rest)
    /// are not answered.
    pub fn is_quiet(self) -> bool {
        use Opcode::*;
        matches!(
            self,
            GetQ | GetKQ
                | SetQ
                | AddQ
                | ReplaceQ
                | DeleteQ
                | IncrementQ
                | DecrementQ
                | QuitQ
                | FlushQ
                | AppendQ
                | PrependQ
                | GatQ
                | GatKQ
        )
    }

    /// The command a quiet variant is a variant of (itself otherwise).
    pub fn loud(self) -> Opcode {
        use Opcode::*;
        match self {
            GetQ => Get,
            GetKQ => GetK,
            SetQ => Set,
            AddQ => Add,
            ReplaceQ => Replace,
            DeleteQ => Delete,
            IncrementQ => Increment,
            DecrementQ => Decrement,
            QuitQ => Quit,
            FlushQ => Flush,
            AppendQ => Append,
            PrependQ => Prepend,
            GatQ => Gat,
            GatKQ => GatK,
            other => other,
        }
    }
}

/// Response status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    NoError = 0x0000,
    KeyNotFound = 0x0001,
    KeyExists = 0x0002,
    TooLarge = 0x0003,
    InvalidArguments = 0x0004,
    NotStored = 0x0005,
    NonNumeric = 0x0006,
    AuthError = 0x0020,
    AuthContinue = 0x0021,
    UnknownCommand = 0x0081,
    OutOfMemory = 0x0082,
    NotSupported = 0x0083,
    InternalError = 0x0084,
    Busy = 0x0085,
    TemporaryFailure = 0x0086,
}

/// A request or response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: u8,
    /// The raw opcode ([`Opcode::from_u8`] names the known ones).
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    /// The vbucket id in a request, the status in a response.
    pub vbucket_or_status: u16,
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

/// Why a header or body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than `HEADER_LEN` bytes (read more).
    Short,
    /// The first byte is not the request magic.
    BadMagic(u8),
    /// Extras and key are longer than the body.
    BodyTooShort,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Header {
    /// Reads a request header from the first `HEADER_LEN` bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<Header, FrameError> {
        if b.len() < HEADER_LEN {
            return Err(FrameError::Short);
        }
        if b[0] != REQ_MAGIC {
            return Err(FrameError::BadMagic(b[0]));
        }
        let h = Header {
            magic: b[0],
            opcode: b[1],
            key_len: be16(&b[2..]),
            extras_len: b[4],
            data_type: b[5],
            vbucket_or_status: be16(&b[6..]),
            body_len: be32(&b[8..]),
            opaque: be32(&b[12..]),
            cas: u64::from_be_bytes(b[16..24].try_into().expect("8 bytes")),
        };
        if usize::from(h.key_len) + usize::from(h.extras_len) > h.body_len as usize {
            return Err(FrameError::BodyTooShort);
        }
        Ok(h)
    }

    /// Splits a body of `body_len` bytes into extras, key and value.
    pub fn split<'a>(&self, body: &'a [u8]) -> (&'a [u8], &'a [u8], &'a [u8]) {
        debug_assert_eq!(body.len(), self.body_len as usize);
        let (extras, rest) = body.split_at(usize::from(self.extras_len));
        let (key, value) = rest.split_at(usize::from(self.key_len));
        (extras, key, value)
    }

    /// Length of the value in the body.
    pub fn value_len(&self) -> usize {
        self.body_len as usize - usize::from(self.key_len) - usize::from(self.extras_len)
    }
}

/// A response's header and the parts of its body that precede the value
/// (the value itself may be sent from elsewhere, e.g. item memory).
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub opcode: u8,
    pub status: Status,
    pub opaque: u32,
    pub cas: u64,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value_len: usize,
}

impl Response<'_> {
    /// Appends the header, extras and key; the caller sends `value_len`
    /// bytes of value after them.
    pub fn write(&self, out: &mut Vec<u8>) {
        let body = self.extras.len() + self.key.len() + self.value_len;
        out.push(RES_MAGIC);
        out.push(self.opcode);
        out.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        out.push(self.extras.len() as u8);
        out.push(0);
        out.extend_from_slice(&(self.status as u16).to_be_bytes());
        out.extend_from_slice(&(body as u32).to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
        out.extend_from_slice(self.extras);
        out.extend_from_slice(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = vec![REQ_MAGIC, opcode];
        b.extend_from_slice(&(key.len() as u16).to_be_bytes());
        b.push(extras.len() as u8);
        b.push(0);
        b.extend_from_slice(&7u16.to_be_bytes());
        b.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        b.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        b.extend_from_slice(&42u64.to_be_bytes());
        b.extend_from_slice(extras);
        b.extend_from_slice(key);
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn every_opcode_round_trips() {
        let mut known = 0;
        for b in 0..=255u8 {
            if let Some(op) = Opcode::from_u8(b) {
                known += 1;
                assert_eq!(op.code(), b);
                assert!(!op.loud().is_quiet(), "{op:?}");
                assert_eq!(op.is_quiet(), op.loud() != op, "{op:?}");
            }
        }
        assert_eq!(known, 36);
        assert_eq!(Opcode::from_u8(0x1f), None);
        assert_eq!(Opcode::from_u8(0x25), None);
        assert_eq!(Opcode::GatKQ.loud(), Opcode::GatK);
    }

    #[test]
    fn a_set_request_splits() {
        let mut extras = 5u32.to_be_bytes().to_vec();
        extras.extend_from_slice(&100u32.to_be_bytes());
        let req = request(0x01, &extras, b"key", b"value");
        let h = Header::parse(&req).unwrap();
        assert_eq!(Opcode::from_u8(h.opcode), Some(Opcode::Set));
        assert_eq!((h.key_len, h.extras_len, h.body_len), (3, 8, 16));
        assert_eq!((h.vbucket_or_status, h.opaque, h.cas), (7, 0xdead_beef, 42));
        assert_eq!(h.value_len(), 5);
        let (e, k, v) = h.split(&req[HEADER_LEN..]);
        assert_eq!((e, k, v), (&extras[..], &b"key"[..], &b"value"[..]));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let req = request(0x00, &[], b"k", &[]);
        assert_eq!(Header::parse(&req[..23]), Err(FrameError::Short));
        let mut bad = req.clone();
        bad[0] = 0x81;
        assert_eq!(Header::parse(&bad), Err(FrameError::BadMagic(0x81)));
        // Body length shorter than extras + key.
        let mut short = req.clone();
        short[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(Header::parse(&short), Err(FrameError::BodyTooShort));
        let mut short = request(0x01, &[0; 8], b"key", b"");
        short[8..12].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(Header::parse(&short), Err(FrameError::BodyTooShort));
        // A huge body is only a number here: the caller decides.
        let mut huge = req;
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Header::parse(&huge).unwrap().body_len, u32::MAX);
    }

    #[test]
    fn random_headers_never_panic_and_parse_consistently() {
        let mut split = 0;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut b = [0u8; HEADER_LEN];
        for _ in 0..200_000 {
            for c in b.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
            }
            if x & 1 == 0 {
                b[0] = REQ_MAGIC;
            }
            if x & 2 == 0 {
                // Small lengths, so that some bodies fit.
                b[2] = 0;
                b[8..11].fill(0);
            }
            if let Ok(h) = Header::parse(&b) {
                assert_eq!(b[0], REQ_MAGIC);
                if h.body_len <= 1024 {
                    let body = vec![0u8; h.body_len as usize];
                    let (e, k, v) = h.split(&body);
                    assert_eq!((e.len(), k.len()), (h.extras_len.into(), h.key_len.into()));
                    assert_eq!(v.len(), h.value_len());
                    split += 1;
                }
            }
        }
        assert!(split > 1000, "{split} bodies split");
    }

    #[test]
    fn a_response_is_written_in_order() {
        let mut out = Vec::new();
        Response {
            opcode: Opcode::GetK.code(),
            status: Status::NoError,
            opaque: 9,
            cas: 77,
            extras: &3u32.to_be_bytes(),
            key: b"ab",
            value_len: 4,
        }
        .write(&mut out);
        out.extend_from_slice(b"data");
        assert_eq!(out.len(), HEADER_LEN + 4 + 2 + 4);
        assert_eq!(&out[..8], &[0x81, 0x0c, 0, 2, 4, 0, 0, 0]);
        assert_eq!(&out[8..12], &10u32.to_be_bytes());
        assert_eq!(&out[12..16], &9u32.to_be_bytes());
        assert_eq!(&out[16..24], &77u64.to_be_bytes());
        assert_eq!(&out[24..], b"\0\0\0\x03abdata");
        let mut e = Vec::new();
        Response {
            opcode: Opcode::Delete.code(),
            status: Status::KeyNotFound,
            opaque: 0,
            cas: 0,
            extras: &[],
            key: &[],
            value_len: 0,
        }
        .write(&mut e);
        assert_eq!(&e[6..8], &[0, 1]);
        assert_eq!(Status::UnknownCommand as u16, 0x81);
    }
}
