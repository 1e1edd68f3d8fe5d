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
use crate::text::{BAD_FORMAT, ERROR};
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
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub kind: Kind,
    /// The key the store sees (decoded when it came base64, `b`).
    pub key: &'a [u8],
    /// Whether it came base64-encoded: a response shows it so.
    pub key_binary: bool,
    pub flags: Flags,
    /// `ms`: the data block's length (its `\r\n` follows it).
    pub datalen: u32,
    /// The flag tokens, as sent.
    flags_sent: &'a [&'a [u8]],
}

impl<'a> Meta<'a> {
    /// The flag tokens in the order sent.
    pub fn flag_tokens(&self) -> impl Iterator<Item = &'a [u8]> {
        self.flags_sent.iter().copied()
    }
}

/// What a parse writes into and the [`Meta`] it returns borrows: the
/// line's tokens and a base64 key's decoded bytes. The caller keeps one
/// on its stack, so a parse allocates and copies nothing.
pub struct Scratch<'a> {
    toks: [&'a [u8]; MAX_TOKENS],
    key: [u8; KEY_MAX_LENGTH],
}

impl Default for Scratch<'_> {
    fn default() -> Self {
        Scratch {
            toks: [&[]; MAX_TOKENS],
            key: [0; KEY_MAX_LENGTH],
        }
    }
}

/// memcached's tokens (runs of bytes between spaces) into `toks`, at most
/// as many as it holds. Returns how many there are in all, up to one more
/// than `toks` holds (the rest is not looked at: too many is refused).
fn tokenize<'a>(line: &'a [u8], toks: &mut [&'a [u8]; MAX_TOKENS]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' {
            i += 1;
            continue;
        }
        if n == MAX_TOKENS {
            return n + 1;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        toks[n] = &line[start..i];
        n += 1;
    }
    n
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
/// command is `kind`. The tokens, and a base64 key (`b`) decoded, go into
/// `scratch`.
pub fn parse<'a>(
    kind: Kind,
    line: &'a [u8],
    scratch: &'a mut Scratch<'a>,
) -> Result<Meta<'a>, Refused> {
    let Scratch { toks, key: keybuf } = scratch;
    // memcached's `ntokens` counts the terminator: real tokens + 1.
    let ntokens = tokenize(line, toks) + 1;
    if kind == Kind::Debug {
        return parse_debug(ntokens, toks, keybuf);
    }
    if ntokens < 3 {
        return Err(refused(ERROR));
    }
    let sent = toks[1];
    if sent.len() > KEY_MAX_LENGTH {
        return Err(refused(BAD_FORMAT));
    }
    let too_many = match kind {
        Kind::Get => "CLIENT_ERROR options flags are too long",
        _ => "CLIENT_ERROR options flags too long",
    };
    if ntokens > MAX_TOKENS {
        return Err(refused(too_many));
    }
    let mut datalen = 0;
    let mut swallow = 0;
    let first_flag = if kind == Kind::Set {
        if ntokens == 3 {
            return Err(refused(BAD_FORMAT));
        }
        match safe_strtol(toks[2]) {
            Some(v) if (0..=i32::MAX - 2).contains(&v) => datalen = v as u32,
            _ => return Err(refused(BAD_FORMAT)),
        }
        swallow = u64::from(datalen) + 2;
        3
    } else {
        2
    };
    let toks: &'a [&'a [u8]] = &toks[..ntokens - 1];
    let flags_sent = &toks[first_flag.min(toks.len())..];
    let (flags, binary) = match preparse(flags_sent, sent, keybuf) {
        Ok(f) => f,
        // md and ma answer every flag error alike.
        Err(_) if matches!(kind, Kind::Delete | Kind::Arith) => {
            return Err(refused("CLIENT_ERROR invalid or duplicate flag"))
        }
        Err(line) => return Err(Refused { line, swallow }),
    };
    let key: &'a [u8] = match binary {
        Some(len) => &keybuf[..len],
        None => sent,
    };
    // What memcached checks before it touches the item (mg and ma check
    // opaque lengths only as they answer, after acting).
    let opaque_too_long = || {
        flags_sent
            .iter()
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
    Ok(Meta {
        kind,
        key,
        key_binary: binary.is_some(),
        flags,
        datalen,
        flags_sent,
    })
}

/// `me <key> [b]`: memcached looks at the key, and at a third token only
/// when it is exactly `b`.
fn parse_debug<'a>(
    ntokens: usize,
    toks: &[&'a [u8]; MAX_TOKENS],
    keybuf: &'a mut [u8; KEY_MAX_LENGTH],
) -> Result<Meta<'a>, Refused> {
    let sent = toks[1];
    if ntokens < 3 || sent.len() > KEY_MAX_LENGTH {
        return Err(refused(BAD_FORMAT));
    }
    let binary = ntokens >= 4 && toks[2] == b"b";
    let key: &'a [u8] = if binary {
        match base64_decode(sent, keybuf) {
            0 => return Err(refused(BAD_FORMAT)),
            len => &keybuf[..len],
        }
    } else {
        sent
    };
    Ok(Meta {
        kind: Kind::Debug,
        key,
        key_binary: binary,
        flags: Flags::default(),
        datalen: 0,
        flags_sent: &[],
    })
}

/// memcached's `_meta_flag_preparse`: reads the flag tokens; `b` decodes
/// `sent_key` into `keybuf` (the decoded length comes back).
/// A repeated or unknown letter ends it at once; other errors are noted
/// (the last one named wins) and the rest is still read.
fn preparse(
    tokens: &[&[u8]],
    sent_key: &[u8],
    keybuf: &mut [u8; KEY_MAX_LENGTH],
) -> Result<(Flags, Option<usize>), &'static str> {
    const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
    let mut f = Flags::default();
    let mut seen = [false; 128];
    let mut error: Option<&'static str> = None;
    let mut binary = None;
    for tok in tokens {
        let o = tok[0];
        if o >= 127 || seen[usize::from(o)] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[usize::from(o)] = true;
        let arg = &tok[1..];
        match o {
            b'b' => {
                let len = base64_decode(sent_key, keybuf);
                if len == 0 {
                    error = Some("CLIENT_ERROR error decoding key");
                }
                binary = Some(len);
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
        None => Ok((f, binary)),
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
        // Each parse gets its own scratch (leaked: a test's few bytes).
        let scratch: &'static mut Scratch<'static> = Box::leak(Box::default());
        let line: &'static [u8] = Box::leak(s.as_bytes().to_vec().into_boxed_slice());
        parse(kind, line, scratch)
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
        assert_eq!(m.key, b"foo");
        assert!(m.key_binary);
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
        assert_eq!(tokens(&m)[0], b"F7", "ms: the flags after the length");
        let m = p(Kind::Arith, "ma n J5 D7 MD N0 T9 t c v").unwrap();
        assert_eq!((m.flags.initial, m.flags.delta), (5, Some(7)));
        assert_eq!(m.flags.mode, Some(b'D'));
        let m = p(Kind::Delete, "md k I x T30 C4 q k Oz").unwrap();
        assert!(m.flags.invalidate && m.flags.remove_value && m.flags.quiet);
        assert_eq!(m.key, b"k");
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
        assert_eq!(m.key, b"foo");
        let m = p(Kind::Debug, "me Zm9v bb").unwrap();
        assert_eq!(m.key, b"Zm9v", "only a lone b decodes");
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
                let mut scratch = Scratch::default();
                if let Ok(m) = parse(kind, &line, &mut scratch) {
                    let _ = m.flag_tokens().count();
                    let _ = m.key;
                }
            }
        }
    }
}
