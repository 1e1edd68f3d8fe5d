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
//! A request is judged by its header alone ([`check`]: lengths per
//! opcode, as memcached 1.6 judges them), so nothing is buffered for a
//! request that will be refused; then [`decode`] reads extras and key
//! into a typed [`Request`]. A value (set, append, SASL data) is read by
//! the server after the header said how long it is and the server's
//! `-I` limit allowed it.

use crate::{StatsGroup, StoreMode, KEY_MAX_LENGTH};

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

/// Why a header cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than `HEADER_LEN` bytes (read more).
    Short,
    /// The first byte is not the request magic: memcached closes the
    /// connection without a word.
    BadMagic(u8),
}

/// The longest SASL mechanism name accepted.
pub const MAX_SASL_MECH_LEN: usize = 32;

/// What memcached does with a request its header already condemns (one
/// whose extras and key are longer than its body fails
/// [`Header::lengths_ok`] before this: "Unknown command", then the
/// connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A key over 250 bytes, or lengths wrong for the opcode: "Invalid
    /// arguments", then the connection is closed.
    Invalid,
    /// An opcode memcached 1.6 does not serve: "Unknown command"; after
    /// extras and key, `body_len` more bytes are discarded (memcached's
    /// own arithmetic, kept so that the byte streams stay in step).
    Unknown,
}

/// A request's command, with its extras decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Get, GetQ, GetK, GetKQ; `with_key`: the K variants.
    Get {
        key: &'a [u8],
        with_key: bool,
    },
    /// Gat, GatQ, GatK, GatKQ.
    Gat {
        key: &'a [u8],
        exptime: u32,
        with_key: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: u32,
    },
    /// Set/Add/Replace (with flags and exptime) and Append/Prepend (0 and
    /// 0); the value follows the key.
    Store(Store<'a>),
    Delete {
        key: &'a [u8],
    },
    /// Increment/Decrement; `exptime` 0xffffffff: do not create.
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        initial: u64,
        exptime: u32,
    },
    Quit,
    Flush {
        delay: u32,
    },
    NoOp,
    Version,
    /// Stat: the group its key names (memcached's rules, see
    /// [`stat_group`]); `None` for a key it does not know.
    Stat {
        group: Option<StatsGroup>,
    },
    SaslListMechs,
    /// SaslAuth (`step` false) or SaslStep; the data follows the key.
    SaslAuth {
        mech: &'a [u8],
        step: bool,
    },
}

/// A store request's extras and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Store<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: u32,
}

impl Command<'_> {
    /// Whether the value after the key is part of this request (else
    /// only header, extras and key are; memcached leaves any further
    /// bytes of a Stat or Gat body in the stream).
    pub fn has_value(&self) -> bool {
        matches!(self, Command::Store(_) | Command::SaslAuth { .. })
    }
}

/// A decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The opcode as sent (responses echo it, quiet or not).
    pub opcode: Opcode,
    pub opaque: u32,
    pub cas: u64,
    pub cmd: Command<'a>,
}

impl Request<'_> {
    pub fn quiet(&self) -> bool {
        self.opcode.is_quiet()
    }
}

/// Judges a request by its header, in memcached 1.6's order (the server
/// checks authentication between [`Header::lengths_ok`] and this).
pub fn check(h: &Header) -> Result<Opcode, Refusal> {
    use Opcode::*;
    let (ext, key, body) = (h.extras_len, usize::from(h.key_len), h.body_len as usize);
    if key > KEY_MAX_LENGTH {
        return Err(Refusal::Invalid);
    }
    let Some(op) = Opcode::from_u8(h.opcode) else {
        return Err(Refusal::Unknown);
    };
    let only = |e: u8| ext == e && body == key + usize::from(e);
    let ok = match op.loud() {
        Version | NoOp | Quit | SaslListMechs => ext == 0 && key == 0 && body == 0,
        Flush => key == 0 && body == usize::from(ext) && (ext == 0 || ext == 4),
        Set | Add | Replace => ext == 8 && key != 0 && body >= key + 8,
        Get | GetK => ext == 0 && key > 0 && body == key,
        Delete => key > 0 && only(0),
        Increment | Decrement => key > 0 && only(20),
        Append | Prepend => key > 0 && ext == 0,
        Stat => ext == 0,
        SaslAuth | SaslStep => ext == 0 && key != 0,
        Touch | Gat | GatK => ext == 4 && key != 0,
        // memcached 1.6 lists the opcode and answers it as unknown.
        Verbosity => return Err(Refusal::Unknown),
        _ => unreachable!("quiet opcodes map to loud ones"),
    };
    if ok {
        Ok(op)
    } else {
        Err(Refusal::Invalid)
    }
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Decodes a request that passed [`check`] as `op`, from its header and
/// the `extras_len + key_len` bytes after it.
pub fn decode<'a>(op: Opcode, h: &Header, ext_key: &'a [u8]) -> Request<'a> {
    use Opcode::*;
    let (e, key) = ext_key.split_at(usize::from(h.extras_len));
    let key = &key[..usize::from(h.key_len)];
    let store = |mode| {
        Command::Store(Store {
            mode,
            key,
            flags: be32(e),
            exptime: be32(&e[4..]),
        })
    };
    let concat = |mode| {
        Command::Store(Store {
            mode,
            key,
            flags: 0,
            exptime: 0,
        })
    };
    let cmd = match op.loud() {
        Get => Command::Get {
            key,
            with_key: false,
        },
        GetK => Command::Get {
            key,
            with_key: true,
        },
        Gat | GatK => Command::Gat {
            key,
            exptime: be32(e),
            with_key: op.loud() == GatK,
        },
        Touch => Command::Touch {
            key,
            exptime: be32(e),
        },
        Set => store(StoreMode::Set),
        Add => store(StoreMode::Add),
        Replace => store(StoreMode::Replace),
        Append => concat(StoreMode::Append),
        Prepend => concat(StoreMode::Prepend),
        Delete => Command::Delete { key },
        Increment | Decrement => Command::Arith {
            incr: op.loud() == Increment,
            key,
            delta: be64(e),
            initial: be64(&e[8..]),
            exptime: be32(&e[16..]),
        },
        Quit => Command::Quit,
        Flush => Command::Flush {
            delay: if e.len() == 4 { be32(e) } else { 0 },
        },
        NoOp => Command::NoOp,
        Version => Command::Version,
        Stat => Command::Stat {
            group: stat_group(key),
        },
        SaslListMechs => Command::SaslListMechs,
        SaslAuth | SaslStep => Command::SaslAuth {
            mech: key,
            step: op == SaslStep,
        },
        Verbosity | GetQ | GetKQ | SetQ | AddQ | ReplaceQ | DeleteQ | IncrementQ | DecrementQ
        | QuitQ | FlushQ | AppendQ | PrependQ | GatQ | GatKQ => {
            unreachable!("check refuses Verbosity; quiet opcodes map to loud ones")
        }
    };
    Request {
        opcode: op,
        opaque: h.opaque,
        cas: h.cas,
        cmd,
    }
}

/// The group a binary Stat key asks for, as memcached 1.6 reads it: no
/// key is everything; `reset`, `settings` and `detail` are matched by
/// prefix (`detail on`, `detail off`, `detail dump`, anything else after
/// `detail` being its usage error); `items`, `slabs` and `sizes` exactly.
/// `conns` and `cachedump` are text-only.
pub fn stat_group(key: &[u8]) -> Option<StatsGroup> {
    Some(if key.is_empty() {
        StatsGroup::General
    } else if key.starts_with(b"reset") {
        StatsGroup::Reset
    } else if key.starts_with(b"settings") {
        StatsGroup::Settings
    } else if let Some(rest) = key.strip_prefix(b"detail") {
        if rest.starts_with(b" dump") {
            StatsGroup::DetailDump
        } else if rest.starts_with(b" on") {
            StatsGroup::DetailOn
        } else if rest.starts_with(b" off") {
            StatsGroup::DetailOff
        } else {
            StatsGroup::DetailUsage
        }
    } else {
        match key {
            b"items" => StatsGroup::Items,
            b"slabs" => StatsGroup::Slabs,
            b"sizes" => StatsGroup::Sizes,
            b"memcrab" => StatsGroup::Memcrab,
            b"hotkeys" => StatsGroup::HotKeys,
            _ => return None,
        }
    })
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
            cas: be64(&b[16..]),
        };
        Ok(h)
    }

    /// Whether extras and key fit in the body.
    pub fn lengths_ok(&self) -> bool {
        usize::from(self.key_len) + usize::from(self.extras_len) <= self.body_len as usize
    }

    /// Bytes of extras and key.
    pub fn ext_key_len(&self) -> usize {
        usize::from(self.key_len) + usize::from(self.extras_len)
    }

    /// Splits a body of `body_len` bytes into extras, key and value
    /// (only for a header whose [`lengths_ok`](Self::lengths_ok)).
    pub fn split<'a>(&self, body: &'a [u8]) -> (&'a [u8], &'a [u8], &'a [u8]) {
        debug_assert_eq!(body.len(), self.body_len as usize);
        let (extras, rest) = body.split_at(usize::from(self.extras_len));
        let (key, value) = rest.split_at(usize::from(self.key_len));
        (extras, key, value)
    }

    /// Length of the value in the body (for a header whose lengths are ok).
    pub fn value_len(&self) -> usize {
        (self.body_len as usize).saturating_sub(self.ext_key_len())
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
        assert!(!Header::parse(&short).unwrap().lengths_ok());
        let mut short = request(0x01, &[0; 8], b"key", b"");
        short[8..12].copy_from_slice(&10u32.to_be_bytes());
        let h = Header::parse(&short).unwrap();
        assert!(!h.lengths_ok());
        assert_eq!(h.value_len(), 0);
        // A huge body is only a number here: the caller decides.
        let mut huge = req;
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let h = Header::parse(&huge).unwrap();
        assert_eq!(h.body_len, u32::MAX);
        assert_eq!(check(&h), Err(Refusal::Invalid), "a get's body is its key");
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
                if let (true, Ok(op)) = (h.lengths_ok(), check(&h)) {
                    let ext_key = vec![0u8; h.ext_key_len()];
                    let r = decode(op, &h, &ext_key);
                    assert_eq!(r.opcode.code(), h.opcode);
                    assert!(h.key_len as usize <= KEY_MAX_LENGTH);
                }
                if h.lengths_ok() && h.body_len <= 1024 {
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

    fn judge(
        opcode: u8,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Result<Request<'static>, Refusal> {
        let req = request(opcode, extras, key, value).leak();
        let h = Header::parse(req).unwrap();
        assert!(h.lengths_ok());
        let op = check(&h)?;
        Ok(decode(
            op,
            &h,
            &req[HEADER_LEN..HEADER_LEN + h.ext_key_len()],
        ))
    }

    fn cmd(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Command<'static> {
        judge(opcode, extras, key, value).unwrap().cmd
    }

    #[test]
    fn every_opcode_decodes() {
        let mut set_ext = 7u32.to_be_bytes().to_vec();
        set_ext.extend_from_slice(&300u32.to_be_bytes());
        let mut arith = 5u64.to_be_bytes().to_vec();
        arith.extend_from_slice(&10u64.to_be_bytes());
        arith.extend_from_slice(&u32::MAX.to_be_bytes());
        let t = 60u32.to_be_bytes();
        for (op, with_key) in [(0x00, false), (0x09, false), (0x0c, true), (0x0d, true)] {
            assert_eq!(
                cmd(op, &[], b"k", &[]),
                Command::Get {
                    key: b"k",
                    with_key
                }
            );
        }
        for (op, with_key) in [(0x1d, false), (0x1e, false), (0x23, true), (0x24, true)] {
            let exptime = 60;
            assert_eq!(
                cmd(op, &t, b"k", &[]),
                Command::Gat {
                    key: b"k",
                    exptime,
                    with_key
                }
            );
        }
        assert_eq!(
            cmd(0x1c, &t, b"k", &[]),
            Command::Touch {
                key: b"k",
                exptime: 60
            }
        );
        for (ops, sop) in [
            ([0x01, 0x11], StoreMode::Set),
            ([0x02, 0x12], StoreMode::Add),
            ([0x03, 0x13], StoreMode::Replace),
        ] {
            for op in ops {
                let r = judge(op, &set_ext, b"key", b"val").unwrap();
                assert_eq!(
                    r.cmd,
                    Command::Store(Store {
                        mode: sop,
                        key: b"key",
                        flags: 7,
                        exptime: 300
                    })
                );
                assert!(r.cmd.has_value());
                assert_eq!(r.quiet(), op >= 0x11);
                assert_eq!((r.opaque, r.cas), (0xdead_beef, 42));
            }
        }
        for (op, sop) in [
            (0x0e, StoreMode::Append),
            (0x19, StoreMode::Append),
            (0x0f, StoreMode::Prepend),
            (0x1a, StoreMode::Prepend),
        ] {
            assert_eq!(
                cmd(op, &[], b"k", b"v"),
                Command::Store(Store {
                    mode: sop,
                    key: b"k",
                    flags: 0,
                    exptime: 0
                })
            );
        }
        for op in [0x04, 0x14] {
            assert_eq!(cmd(op, &[], b"k", &[]), Command::Delete { key: b"k" });
        }
        for (op, incr) in [(0x05, true), (0x15, true), (0x06, false), (0x16, false)] {
            let c = cmd(op, &arith, b"n", &[]);
            assert_eq!(
                c,
                Command::Arith {
                    incr,
                    key: b"n",
                    delta: 5,
                    initial: 10,
                    exptime: u32::MAX
                }
            );
        }
        assert_eq!(cmd(0x07, &[], &[], &[]), Command::Quit);
        assert_eq!(cmd(0x17, &[], &[], &[]), Command::Quit);
        assert_eq!(cmd(0x08, &[], &[], &[]), Command::Flush { delay: 0 });
        assert_eq!(cmd(0x18, &t, &[], &[]), Command::Flush { delay: 60 });
        assert_eq!(cmd(0x0a, &[], &[], &[]), Command::NoOp);
        assert_eq!(cmd(0x0b, &[], &[], &[]), Command::Version);
        assert_eq!(
            cmd(0x10, &[], &[], &[]),
            Command::Stat {
                group: Some(StatsGroup::General)
            }
        );
        for (key, group) in [
            (&b"items"[..], Some(StatsGroup::Items)),
            (b"slabs", Some(StatsGroup::Slabs)),
            (b"sizes", Some(StatsGroup::Sizes)),
            (b"settings", Some(StatsGroup::Settings)),
            (b"settingsXYZ", Some(StatsGroup::Settings)),
            (b"reset", Some(StatsGroup::Reset)),
            (b"resetting", Some(StatsGroup::Reset)),
            (b"detail", Some(StatsGroup::DetailUsage)),
            (b"detail dump", Some(StatsGroup::DetailDump)),
            (b"detail on", Some(StatsGroup::DetailOn)),
            (b"detail off", Some(StatsGroup::DetailOff)),
            (b"detail bogus", Some(StatsGroup::DetailUsage)),
            (b"itemsX", None),
            (b"conns", None),
            (b"cachedump 1 0", None),
        ] {
            assert_eq!(cmd(0x10, &[], key, &[]), Command::Stat { group }, "{key:?}");
        }
        assert_eq!(cmd(0x20, &[], &[], &[]), Command::SaslListMechs);
        let auth = cmd(0x21, &[], b"PLAIN", b"\0u\0p");
        assert_eq!(
            auth,
            Command::SaslAuth {
                mech: b"PLAIN",
                step: false
            }
        );
        assert!(auth.has_value());
        assert_eq!(
            cmd(0x22, &[], b"PLAIN", &[]),
            Command::SaslAuth {
                mech: b"PLAIN",
                step: true
            }
        );
    }

    #[test]
    fn lengths_wrong_for_the_opcode_are_refused() {
        let inval = Err(Refusal::Invalid);
        assert_eq!(judge(0x00, &[], b"", &[]), inval, "get without a key");
        assert_eq!(
            judge(0x00, &[1, 2, 3, 4], b"k", &[]),
            inval,
            "get with extras"
        );
        assert_eq!(judge(0x00, &[], b"k", b"v"), inval, "get with a value");
        assert_eq!(judge(0x01, &[], b"k", b"v"), inval, "set without extras");
        assert_eq!(judge(0x01, &[0; 8], b"", b"v"), inval, "set without a key");
        assert_eq!(judge(0x0a, &[], b"k", &[]), inval, "noop with a key");
        assert_eq!(judge(0x0b, &[], &[], b"v"), inval, "version with a value");
        assert_eq!(judge(0x08, &[0; 8], &[], &[]), inval, "flush with 8 extras");
        assert_eq!(judge(0x08, &[], &[], b"v"), inval, "flush with a value");
        assert_eq!(judge(0x05, &[0; 8], b"n", &[]), inval, "incr with 8 extras");
        assert_eq!(judge(0x04, &[], b"k", b"v"), inval, "delete with a value");
        assert_eq!(judge(0x1d, &[], b"k", &[]), inval, "gat without exptime");
        assert_eq!(judge(0x1c, &[0; 4], b"", &[]), inval, "touch without a key");
        assert_eq!(
            judge(0x0e, &[0; 4], b"k", b"v"),
            inval,
            "append with extras"
        );
        assert_eq!(judge(0x10, &[0; 4], &[], &[]), inval, "stat with extras");
        assert_eq!(
            judge(0x21, &[], b"", b"x"),
            inval,
            "auth without a mechanism"
        );
        assert_eq!(
            judge(0x20, &[], b"x", &[]),
            inval,
            "mechanism list with a key"
        );
        assert_eq!(judge(0x00, &[], &[b'k'; 251], &[]), inval, "a 251-byte key");
        assert!(judge(0x00, &[], &[b'k'; 250], &[]).is_ok());
        // Unknown opcodes, and Verbosity (memcached 1.6 answers it so).
        for op in [0x1b, 0x1f, 0x25, 0x30, 0xff] {
            assert_eq!(judge(op, &[], &[], &[]), Err(Refusal::Unknown), "{op:#x}");
        }
        // A key too long is judged before the opcode.
        assert_eq!(judge(0x30, &[], &[b'k'; 300], &[]), inval);
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
