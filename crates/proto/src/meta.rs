//! The meta protocol's command lines: `mg`, `ms`, `md`, `ma`, `me` (`mn`
//! is answered by the text parser alone). One line in, one typed [`Meta`]
//! out, or the error line memcached 1.6.18 answers, checked in its order.
//!
//! ```text
//!  "mg <key> <flags>*"          "ms <key> <datalen> <flags>*"  + data block
//!  "md <key> <flags>*"          "ma <key> <flags>*"            "me <key> [b]"
//!     tokens (spaces only, at most 19 real ones for mg/ms/md/ma)
//!     ──► key (base64-decoded with `b`) ──► flags: one letter each, some
//!         with a token (`T30`, `Oabc`); a repeated or unknown letter ends
//!         the parse ──► Meta { kind, key, flags, tokens }
//! ```
//!
//! A response echoes some flags in the order they were sent (`O`, `k`,
//! `c`, `t`, ...), and some flags act at their place in that order (`mg k
//! t T30` reports the TTL before `T` changes it), so [`Meta::flag_tokens`]
//! hands the tokens back in order for the server to walk.
//!
//! Flags added after 1.6.18 (from the 1.6.45 protocol text): `E(token)`
//! (the CAS value to give a new or changed item) and `x` (md: keep the
//! item, drop its value); `mg C(token)`, `ms s` and `ms N(token)` change
//! what flags 1.6.18 already accepted mean (the server applies them).

use crate::num::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::text::{Tokens, BAD_FORMAT, ERROR};
use crate::KEY_MAX_LENGTH;

/// memcached's `MFLAG_MAX_OPT_LENGTH`: `ntokens` (command, key, flags and
/// the terminator) above this is refused.
const MAX_TOKENS: usize = 20;
/// The longest opaque (`O`) token, its letter included.
pub const MAX_OPAQUE_LENGTH: usize = 32;

pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";

/// The meta command a line starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    Set,
    Delete,
    Arith,
    Debug,
}

impl Kind {
    /// The command for the second letter of a two-letter `m` command
    /// (`mn` is not one of these: it takes no key).
    pub fn from_letter(c: u8) -> Option<Kind> {
        Some(match c {
            b'g' => Kind::Get,
            b's' => Kind::Set,
            b'd' => Kind::Delete,
            b'a' => Kind::Arith,
            b'e' => Kind::Debug,
            _ => return None,
        })
    }
}

/// A key as sent, or decoded from base64 (`b`).
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    sent: &'a [u8],
    decoded: [u8; KEY_MAX_LENGTH],
    len: usize,
    binary: bool,
}

impl<'a> Key<'a> {
    fn new(sent: &'a [u8]) -> Self {
        Key {
            sent,
            decoded: [0; KEY_MAX_LENGTH],
            len: 0,
            binary: false,
        }
    }

    /// The key the store sees.
    pub fn bytes(&self) -> &[u8] {
        if self.binary {
            &self.decoded[..self.len]
        } else {
            self.sent
        }
    }

    /// Whether it came base64-encoded (`b`): a response shows it so.
    pub fn binary(&self) -> bool {
        self.binary
    }

    /// Decodes the sent key in place of itself; false when it is not
    /// base64 by memcached's rules.
    fn decode(&mut self) -> bool {
        self.binary = true;
        self.len = base64_decode(self.sent, &mut self.decoded);
        self.len != 0
    }
}

/// The flags of a meta command, as values. Which letters were sent, and
/// in what order, is in [`Meta::flag_tokens`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `N(token)`: on a miss, create the item with this exptime.
    pub vivify: Option<i32>,
    /// `T(token)`: a new exptime.
    pub ttl: Option<i32>,
    /// `R(token)`: win the right to recache when the TTL left is below
    /// this.
    pub recache: Option<i32>,
    /// `F(token)`: client flags (0 when not sent).
    pub client_flags: u32,
    /// `C(token)`: the CAS value to compare.
    pub cas: Option<u64>,
    /// `E(token)`: the CAS value a changed item is given (1.6.45).
    pub new_cas: Option<u64>,
    /// `M(token)`: the mode letter.
    pub mode: Option<u8>,
    /// `J(token)`: ma's initial value on a created item.
    pub initial: u64,
    /// `D(token)`: ma's delta.
    pub delta: Option<u64>,
    /// `I`: invalidate (mark stale) instead of failing or removing.
    pub invalidate: bool,
    /// `u`: do not bump the item.
    pub no_update: bool,
    /// `q`: leave out the nominal reply.
    pub quiet: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `x`: md removes the value but keeps the item (1.6.45).
    pub remove_value: bool,
}

/// A parsed meta command.
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    pub kind: Kind,
    pub key: Key<'a>,
    pub flags: Flags,
    /// `ms`: the data block's length (its `\r\n` follows it).
    pub datalen: u32,
    tokens: Tokens<'a>,
}

impl<'a> Meta<'a> {
    /// The tokens after the key, in the order sent (for `ms` the data
    /// length comes first: it starts with a digit, so it names no flag).
    pub fn flag_tokens(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (2..self.tokens.n() - 1).filter_map(|i| self.tokens.value(i))
    }
}

/// A meta command memcached refuses: its reply line (always sent, `q` or
/// not) and, for `ms`, the bytes of data block to discard after the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub line: &'static str,
    pub swallow: u64,
}

fn refused(line: &'static str) -> Refused {
    Refused { line, swallow: 0 }
}

/// Parses a meta command line (already through `text::trim_line`) whose
/// command is `kind`.
pub fn parse(kind: Kind, line: &[u8]) -> Result<Meta<'_>, Refused> {
    let t = Tokens::split(line);
    let n = t.n();
    if kind == Kind::Debug {
        return parse_debug(t);
    }
    if n < 3 {
        return Err(refused(ERROR));
    }
    let mut key = Key::new(t.get(1));
    if key.sent.len() > KEY_MAX_LENGTH {
        return Err(refused(BAD_FORMAT));
    }
    let too_many = match kind {
        Kind::Get => "CLIENT_ERROR options flags are too long",
        _ => "CLIENT_ERROR options flags too long",
    };
    let mut datalen = 0;
    let mut swallow = 0;
    let start = if kind == Kind::Set {
        if n == 3 {
            return Err(refused(BAD_FORMAT));
        }
        if n > MAX_TOKENS {
            return Err(refused(too_many));
        }
        match safe_strtol(t.get(2)) {
            Some(v) if (0..=i32::MAX - 2).contains(&v) => datalen = v as u32,
            _ => return Err(refused(BAD_FORMAT)),
        }
        swallow = u64::from(datalen) + 2;
        3
    } else {
        if n > MAX_TOKENS {
            return Err(refused(too_many));
        }
        2
    };
    let flags = match preparse(&t, start, &mut key) {
        Ok(f) => f,
        // md and ma answer every flag error alike.
        Err(_) if matches!(kind, Kind::Delete | Kind::Arith) => {
            return Err(refused("CLIENT_ERROR invalid or duplicate flag"))
        }
        Err(line) => return Err(Refused { line, swallow }),
    };
    let meta = Meta {
        kind,
        key,
        flags,
        datalen,
        tokens: t,
    };
    // What memcached checks before it touches the item (mg and ma check
    // opaque lengths only as they answer, after acting).
    let opaque_too_long = || {
        meta.flag_tokens()
            .any(|tok| tok[0] == b'O' && tok.len() > MAX_OPAQUE_LENGTH)
    };
    match kind {
        Kind::Set => {
            if !matches!(flags.mode, None | Some(b'E' | b'A' | b'P' | b'R' | b'S')) {
                return Err(Refused {
                    line: "CLIENT_ERROR invalid mode for ms M token",
                    swallow,
                });
            }
            if opaque_too_long() {
                return Err(Refused {
                    line: OPAQUE_TOO_LONG,
                    swallow,
                });
            }
        }
        Kind::Delete if opaque_too_long() => return Err(refused(OPAQUE_TOO_LONG)),
        Kind::Arith if !matches!(flags.mode, None | Some(b'I' | b'+' | b'D' | b'-')) => {
            return Err(refused("CLIENT_ERROR invalid mode for ma M token"))
        }
        _ => {}
    }
    Ok(meta)
}

/// `me <key> [b]`: memcached looks at the key, and at a third token only
/// when it is exactly `b`.
fn parse_debug(t: Tokens<'_>) -> Result<Meta<'_>, Refused> {
    let n = t.n();
    if n < 3 || t.get(1).len() > KEY_MAX_LENGTH {
        return Err(refused(BAD_FORMAT));
    }
    let mut key = Key::new(t.get(1));
    if n >= 4 && t.get(2) == b"b" && !key.decode() {
        return Err(refused(BAD_FORMAT));
    }
    Ok(Meta {
        kind: Kind::Debug,
        key,
        flags: Flags::default(),
        datalen: 0,
        tokens: t,
    })
}

/// memcached's `_meta_flag_preparse`: reads the flags from token `start`.
/// A repeated or unknown letter ends it at once; other errors are noted
/// (the last one named wins) and the rest is still read.
fn preparse<'a>(t: &Tokens<'a>, start: usize, key: &mut Key<'a>) -> Result<Flags, &'static str> {
    const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
    let mut f = Flags::default();
    let mut seen = [false; 128];
    let mut error: Option<&'static str> = None;
    for i in start..t.n() - 1 {
        let Some(tok) = t.value(i) else { break };
        let o = tok[0];
        if o >= 127 || seen[usize::from(o)] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[usize::from(o)] = true;
        let arg = &tok[1..];
        match o {
            b'b' => {
                if !key.decode() {
                    error = Some("CLIENT_ERROR error decoding key");
                }
            }
            b'N' | b'T' | b'R' => match safe_strtol(arg) {
                Some(v) => match o {
                    b'N' => f.vivify = Some(v),
                    b'T' => f.ttl = Some(v),
                    _ => f.recache = Some(v),
                },
                None => error = Some(BAD_TOKEN),
            },
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'l' | b'h' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.quiet = true,
            b'I' => f.invalidate = true,
            b'x' => f.remove_value = true,
            b'F' => match safe_strtoul(arg) {
                Some(v) => f.client_flags = v,
                // memcached notes the error without naming it.
                None => error = Some(error.unwrap_or(BAD_FORMAT)),
            },
            b'C' | b'E' => match safe_strtoull(arg) {
                Some(v) if o == b'C' => f.cas = Some(v),
                Some(v) => f.new_cas = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'M' => {
                if tok.len() != 2 {
                    error = Some("CLIENT_ERROR incorrect length for M token");
                } else {
                    f.mode = Some(tok[1]);
                }
            }
            b'J' => match safe_strtoull(arg) {
                Some(v) => f.initial = v,
                None => error = Some("CLIENT_ERROR invalid numeric initial value"),
            },
            b'D' => match safe_strtoull(arg) {
                Some(v) => f.delta = Some(v),
                None => error = Some("CLIENT_ERROR invalid numeric delta value"),
            },
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(f),
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A base64 character's value; `=` counts as 0, anything else is skipped.
fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// memcached's base64 decoder: characters outside the alphabet are
/// skipped; the rest must come in fours; one or two `=` end the data
/// (three are refused). Returns the decoded length, 0 when refused (or
/// when it does not fit `out`).
pub fn base64_decode(src: &[u8], out: &mut [u8]) -> usize {
    let count = src.iter().filter(|&&c| b64_value(c).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return 0;
    }
    let mut pos = 0;
    let (mut block, mut n, mut pad) = ([0u8; 4], 0, 0);
    for &c in src {
        let Some(v) = b64_value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out[pos] = (block[0] << 2) | (block[1] >> 4);
            out[pos + 1] = (block[1] << 4) | (block[2] >> 2);
            out[pos + 2] = (block[2] << 6) | block[3];
            pos += 3;
            n = 0;
            if pad > 0 {
                if pad > 2 {
                    return 0;
                }
                pos -= pad;
                break;
            }
        }
    }
    pos
}

/// Appends `src` in base64, with `=` padding.
pub fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    let at = |i: u8| BASE64[usize::from(i)];
    for c in src.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        out.push(at(b[0] >> 2));
        out.push(at(((b[0] & 3) << 4) | (b[1] >> 4)));
        out.push(if c.len() > 1 {
            at(((b[1] & 0x0f) << 2) | (b[2] >> 6))
        } else {
            b'='
        });
        out.push(if c.len() > 2 { at(b[2] & 0x3f) } else { b'=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: Kind, s: &str) -> Result<Meta<'_>, Refused> {
        parse(kind, s.as_bytes())
    }

    fn err(kind: Kind, s: &str) -> &'static str {
        p(kind, s).unwrap_err().line
    }

    fn tokens<'a>(m: &Meta<'a>) -> Vec<&'a [u8]> {
        m.flag_tokens().collect()
    }

    #[test]
    fn every_flag_reads_its_value() {
        let m = p(Kind::Get, "mg k b c f h k l Oabc q s t u v N30 R10 T-1").unwrap_err();
        assert_eq!(m.line, "CLIENT_ERROR error decoding key", "k is not base64");
        let m = p(Kind::Get, "mg Zm9v c f h k l Oabc q s t u v N30 R10 T-1 b").unwrap();
        assert_eq!(m.key.bytes(), b"foo");
        assert!(m.key.binary());
        let f = m.flags;
        assert_eq!((f.vivify, f.recache, f.ttl), (Some(30), Some(10), Some(-1)));
        assert!(f.quiet && f.no_update && f.value && !f.invalidate);
        assert_eq!(tokens(&m)[5], b"Oabc");
        let m = p(Kind::Set, "ms k 5 F7 C99 E12 I MA T60 N5 s").unwrap();
        assert_eq!(m.datalen, 5);
        let f = m.flags;
        assert_eq!((f.client_flags, f.cas, f.new_cas), (7, Some(99), Some(12)));
        assert_eq!((f.mode, f.ttl, f.vivify), (Some(b'A'), Some(60), Some(5)));
        assert!(f.invalidate);
        assert_eq!(tokens(&m)[0], b"5", "ms: the data length comes first");
        let m = p(Kind::Arith, "ma n J5 D7 MD N0 T9 t c v").unwrap();
        assert_eq!((m.flags.initial, m.flags.delta), (5, Some(7)));
        assert_eq!(m.flags.mode, Some(b'D'));
        let m = p(Kind::Delete, "md k I x T30 C4 q k Oz").unwrap();
        assert!(m.flags.invalidate && m.flags.remove_value && m.flags.quiet);
        assert_eq!(m.key.bytes(), b"k");
        // P and L are proxy hints: accepted, ignored.
        assert!(p(Kind::Get, "mg k Pfoo Lbar v").is_ok());
    }

    #[test]
    fn errors_in_memcacheds_order_and_words() {
        use Kind::*;
        assert_eq!(err(Get, "mg"), "ERROR");
        assert_eq!(err(Set, "ms"), "ERROR");
        let long = format!("mg {} v", "k".repeat(251));
        assert_eq!(err(Get, &long), BAD_FORMAT);
        let flags20 = format!("mg k {}", "v ".repeat(18));
        assert_eq!(
            err(Get, &flags20),
            "CLIENT_ERROR options flags are too long"
        );
        let flags19 = format!("mg k {}", "v ".repeat(17));
        assert_eq!(err(Get, &flags19), "CLIENT_ERROR duplicate flag");
        let md = format!("md k {}", "q ".repeat(18));
        assert_eq!(err(Delete, &md), "CLIENT_ERROR options flags too long");
        assert_eq!(err(Get, "mg k v v"), "CLIENT_ERROR duplicate flag");
        assert_eq!(err(Get, "mg k z"), "CLIENT_ERROR invalid flag");
        assert_eq!(err(Get, "mg k \u{80}"), "CLIENT_ERROR duplicate flag");
        assert_eq!(
            err(Get, "mg k Tx"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(
            err(Get, "mg k T"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(err(Get, "mg k Fx"), BAD_FORMAT);
        // The last error named wins; an unknown flag ends the parse.
        assert_eq!(
            err(Get, "mg k Tx MAB"),
            "CLIENT_ERROR incorrect length for M token"
        );
        assert_eq!(
            err(Get, "mg k MAB Tx"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(err(Get, "mg k Tx z"), "CLIENT_ERROR invalid flag");
        assert_eq!(
            err(Arith, "ma k Jx"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        assert_eq!(
            err(Arith, "ma k MX"),
            "CLIENT_ERROR invalid mode for ma M token"
        );
        assert_eq!(
            err(Delete, "md k v v"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        let o33 = format!("md k O{}", "x".repeat(32));
        assert_eq!(err(Delete, &o33), OPAQUE_TOO_LONG);
        let o32 = format!("md k O{}", "x".repeat(31));
        assert!(p(Delete, &o32).is_ok());
        // mg and ma find a long opaque only as they answer.
        assert!(p(Get, &format!("mg k O{}", "x".repeat(40))).is_ok());
        // ms: before the length is read nothing is swallowed; after, the
        // data block and its \r\n are.
        assert_eq!(p(Set, "ms k").unwrap_err(), refused(BAD_FORMAT));
        assert_eq!(p(Set, "ms k x").unwrap_err(), refused(BAD_FORMAT));
        assert_eq!(p(Set, "ms k -1").unwrap_err(), refused(BAD_FORMAT));
        assert_eq!(p(Set, "ms k 2147483646").unwrap_err(), refused(BAD_FORMAT));
        assert!(p(Set, "ms k 2147483645").is_ok());
        let e = p(Set, "ms k 10 v v").unwrap_err();
        assert_eq!(
            e,
            Refused {
                line: "CLIENT_ERROR duplicate flag",
                swallow: 12
            }
        );
        let e = p(Set, "ms k 3 MX").unwrap_err();
        assert_eq!(e.line, "CLIENT_ERROR invalid mode for ms M token");
        assert_eq!(e.swallow, 5);
        let e = p(Set, &format!("ms k 3 MX O{}", "y".repeat(40))).unwrap_err();
        assert_eq!(
            e.line, "CLIENT_ERROR invalid mode for ms M token",
            "mode first"
        );
        let e = p(Set, &format!("ms k 3 O{}", "y".repeat(40))).unwrap_err();
        assert_eq!(
            e,
            Refused {
                line: OPAQUE_TOO_LONG,
                swallow: 5
            }
        );
        let e = p(Set, "ms k 3 b").unwrap_err();
        assert_eq!(e.line, "CLIENT_ERROR error decoding key");
    }

    #[test]
    fn meta_debug_reads_key_and_b_only() {
        assert_eq!(err(Kind::Debug, "me"), BAD_FORMAT);
        assert!(p(Kind::Debug, "me k").is_ok());
        assert!(p(Kind::Debug, "me k anything v v").is_ok());
        let m = p(Kind::Debug, "me Zm9v b").unwrap();
        assert_eq!(m.key.bytes(), b"foo");
        let m = p(Kind::Debug, "me Zm9v bb").unwrap();
        assert_eq!(m.key.bytes(), b"Zm9v", "only a lone b decodes");
        assert_eq!(err(Kind::Debug, "me ! b"), BAD_FORMAT);
    }

    #[test]
    fn base64_as_memcached_reads_and_writes_it() {
        let dec = |s: &str| {
            let mut out = [0u8; 64];
            let n = base64_decode(s.as_bytes(), &mut out);
            out[..n].to_vec()
        };
        assert_eq!(dec("Zm9v"), b"foo");
        assert_eq!(dec("Zm9vYg=="), b"foob");
        assert_eq!(dec("Zm9vYmE="), b"fooba");
        assert_eq!(
            dec("Zm!9v"),
            b"foo",
            "characters outside the alphabet are skipped"
        );
        assert_eq!(dec("Zm9"), b"", "not a multiple of four");
        assert_eq!(dec("Zm9vY==="), b"", "three pads");
        assert_eq!(dec(""), b"");
        assert_eq!(dec("AA==AAAA"), [0], "data ends at the padded block");
        for v in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"\x00\xff\x10 \r\n",
            &[7u8; 187],
        ] {
            let mut e = Vec::new();
            base64_encode(v, &mut e);
            let mut out = [0u8; 256];
            let n = base64_decode(&e, &mut out);
            if !v.is_empty() {
                assert_eq!(&out[..n], v);
            }
        }
        let mut e = Vec::new();
        base64_encode(b"foob", &mut e);
        assert_eq!(e, b"Zm9vYg==");
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 99u64;
        for _ in 0..50_000 {
            let mut line = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 60) as usize;
            for j in 0..len {
                let alphabet = b"mgsda ekbcfhlOqstuvNRTFCEMJDIxP0123456789-=+/\x80";
                let c = alphabet[((x >> (j % 50)) as usize + j * 7) % alphabet.len()];
                line.push(c);
            }
            for kind in [Kind::Get, Kind::Set, Kind::Delete, Kind::Arith, Kind::Debug] {
                if let Ok(m) = parse(kind, &line) {
                    let _ = m.flag_tokens().count();
                    let _ = m.key.bytes();
                }
            }
        }
    }
}
