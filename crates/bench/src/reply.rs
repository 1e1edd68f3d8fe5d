//! Parsing the server's answers on the client side: one complete reply at
//! a time from the front of a buffer.

/// One reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A get's answer: the values found (key, data), in order.
    Values(Vec<(Vec<u8>, Vec<u8>)>),
    /// A one-line answer such as STORED or VERSION.
    Line(Vec<u8>),
    /// ERROR, CLIENT_ERROR or SERVER_ERROR.
    Error(Vec<u8>),
}

/// What a request expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// VALUE blocks ending with END.
    Values,
    /// One line.
    Line,
    /// Binary protocol responses: GetKQ hits up to the closing GetK's
    /// answer (a get), or one response (anything else).
    Binary,
    /// Meta replies: one (`VA` with its data, `EN`, `HD`), or with
    /// `until_mn` the `VA`s of quiet gets up to `MN`.
    Meta { until_mn: bool },
}

/// One binary response: opcode, status, key, value, bytes taken.
struct BinResponse<'a> {
    op: u8,
    status: u16,
    key: &'a [u8],
    value: &'a [u8],
    len: usize,
}

/// The binary response at the start of `buf`, when it is all there.
fn binary_response(buf: &[u8]) -> Option<BinResponse<'_>> {
    if buf.len() < 24 {
        return None;
    }
    let klen = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let elen = buf[4] as usize;
    let status = u16::from_be_bytes([buf[6], buf[7]]);
    let body = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if buf.len() < 24 + body || elen + klen > body {
        return None;
    }
    let key = &buf[24 + elen..24 + elen + klen];
    let value = &buf[24 + elen + klen..24 + body];
    Some(BinResponse {
        op: buf[1],
        status,
        key,
        value,
        len: 24 + body,
    })
}

fn parse_binary(buf: &[u8], keep_data: bool) -> Option<(Reply, usize)> {
    let mut pos = 0;
    let mut values = Vec::new();
    loop {
        let BinResponse {
            op,
            status,
            key,
            value,
            len,
        } = binary_response(&buf[pos..])?;
        pos += len;
        let data = || {
            if keep_data {
                value.to_vec()
            } else {
                Vec::new()
            }
        };
        match op {
            // GetKQ: a hit (misses are not answered).
            0x0d => values.push((key.to_vec(), data())),
            // GetK ends a get.
            0x0c => {
                if status == 0 {
                    values.push((key.to_vec(), data()));
                } else if status != 1 {
                    return Some((Reply::Error(value.to_vec()), pos));
                }
                return Some((Reply::Values(values), pos));
            }
            _ if status != 0 => return Some((Reply::Error(value.to_vec()), pos)),
            0x01 | 0x11 => return Some((Reply::Line(b"STORED".to_vec()), pos)),
            _ => return Some((Reply::Line(value.to_vec()), pos)),
        }
    }
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(&buf[from..], b"\r\n").map(|p| from + p)
}

fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// The key a meta reply echoes (`k<key>`).
fn meta_key(flags: &[u8]) -> Vec<u8> {
    flags
        .split(|&b| b == b' ')
        .find_map(|t| t.strip_prefix(b"k"))
        .unwrap_or_default()
        .to_vec()
}

fn parse_meta(buf: &[u8], until_mn: bool, keep_data: bool) -> Option<(Reply, usize)> {
    let mut pos = 0;
    let mut values = Vec::new();
    loop {
        let end = line_end(buf, pos)?;
        let line = &buf[pos..end];
        if is_error(line) {
            return Some((Reply::Error(line.to_vec()), end + 2));
        }
        if let Some(rest) = line.strip_prefix(b"VA ") {
            let sp = memchr::memchr(b' ', rest).unwrap_or(rest.len());
            let len: usize = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|l| l.parse().ok())?;
            let data_start = end + 2;
            if buf.len() < data_start + len + 2 {
                return None;
            }
            let data = if keep_data {
                buf[data_start..data_start + len].to_vec()
            } else {
                Vec::new()
            };
            values.push((meta_key(&rest[sp..]), data));
            pos = data_start + len + 2;
            if !until_mn {
                return Some((Reply::Values(values), pos));
            }
            continue;
        }
        pos = end + 2;
        match line {
            b"MN" if until_mn => return Some((Reply::Values(values), pos)),
            b"EN" if !until_mn => return Some((Reply::Values(values), pos)),
            // A set's nominal answer.
            _ if line.starts_with(b"HD") && !until_mn => {
                return Some((Reply::Line(b"STORED".to_vec()), pos))
            }
            _ => return Some((Reply::Error(line.to_vec()), pos)),
        }
    }
}

/// Parses one reply from the start of `buf`. Returns the reply and the
/// bytes it took, or None when more bytes are needed. `keep_data` copies
/// values out (for verification); otherwise only keys are kept.
pub fn parse(buf: &[u8], expect: Expect, keep_data: bool) -> Option<(Reply, usize)> {
    match expect {
        Expect::Binary => parse_binary(buf, keep_data),
        Expect::Meta { until_mn } => parse_meta(buf, until_mn, keep_data),
        Expect::Line => {
            let end = line_end(buf, 0)?;
            let line = buf[..end].to_vec();
            let r = if is_error(&line) {
                Reply::Error(line)
            } else {
                Reply::Line(line)
            };
            Some((r, end + 2))
        }
        Expect::Values => {
            let mut pos = 0;
            let mut values = Vec::new();
            loop {
                let end = line_end(buf, pos)?;
                let line = &buf[pos..end];
                if line == b"END" {
                    return Some((Reply::Values(values), end + 2));
                }
                if is_error(line) {
                    return Some((Reply::Error(line.to_vec()), end + 2));
                }
                let Some(rest) = line.strip_prefix(b"VALUE ") else {
                    return Some((Reply::Error(line.to_vec()), end + 2));
                };
                let mut parts = rest.split(|&b| b == b' ');
                let key = parts.next().unwrap_or_default().to_vec();
                let _flags = parts.next();
                let len: usize = parts
                    .next()
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let data_start = end + 2;
                if buf.len() < data_start + len + 2 {
                    return None;
                }
                let data = if keep_data {
                    buf[data_start..data_start + len].to_vec()
                } else {
                    Vec::new()
                };
                values.push((key, data));
                pos = data_start + len + 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_complete_and_partial() {
        let buf = b"VALUE a 0 3\r\nabc\r\nVALUE bb 5 2 77\r\nxy\r\nEND\r\nSTORED\r\n";
        let (r, n) = parse(buf, Expect::Values, true).unwrap();
        assert_eq!(
            r,
            Reply::Values(vec![
                (b"a".to_vec(), b"abc".to_vec()),
                (b"bb".to_vec(), b"xy".to_vec())
            ])
        );
        assert_eq!(&buf[n..], b"STORED\r\n");
        for cut in 0..n {
            assert!(
                parse(&buf[..cut], Expect::Values, true).is_none(),
                "cut {cut}"
            );
        }
        let (r, _) = parse(&buf[n..], Expect::Line, false).unwrap();
        assert_eq!(r, Reply::Line(b"STORED".to_vec()));
    }

    #[test]
    fn errors_and_misses() {
        assert_eq!(
            parse(b"END\r\n", Expect::Values, false),
            Some((Reply::Values(vec![]), 5))
        );
        assert_eq!(
            parse(b"SERVER_ERROR out of memory\r\n", Expect::Line, false)
                .unwrap()
                .0,
            Reply::Error(b"SERVER_ERROR out of memory".to_vec())
        );
        assert!(matches!(
            parse(b"CLIENT_ERROR x\r\n", Expect::Values, false)
                .unwrap()
                .0,
            Reply::Error(_)
        ));
    }

    fn bin(op: u8, status: u16, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = vec![0x81, op];
        b.extend_from_slice(&(key.len() as u16).to_be_bytes());
        b.extend_from_slice(&[4, 0]);
        b.extend_from_slice(&status.to_be_bytes());
        b.extend_from_slice(&((4 + key.len() + value.len()) as u32).to_be_bytes());
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(key);
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn binary_gets_and_sets() {
        let mut buf = bin(0x0d, 0, b"a", b"abc");
        buf.extend_from_slice(&bin(0x0c, 1, b"b", b""));
        let end = buf.len();
        buf.extend_from_slice(&bin(0x01, 0, b"", b""));
        let (r, n) = parse(&buf, Expect::Binary, true).unwrap();
        assert_eq!(r, Reply::Values(vec![(b"a".to_vec(), b"abc".to_vec())]));
        assert_eq!(n, end);
        for cut in 0..n {
            assert!(
                parse(&buf[..cut], Expect::Binary, true).is_none(),
                "cut {cut}"
            );
        }
        let (r, _) = parse(&buf[n..], Expect::Binary, false).unwrap();
        assert_eq!(r, Reply::Line(b"STORED".to_vec()));
        let e = bin(0x01, 3, b"", b"Too large.");
        assert_eq!(
            parse(&e, Expect::Binary, false).unwrap().0,
            Reply::Error(b"Too large.".to_vec())
        );
    }

    #[test]
    fn meta_gets_sets_and_quiet_multigets() {
        let one = Expect::Meta { until_mn: false };
        let buf = b"VA 3 f0 t-1 c9\r\nabc\r\nEN\r\nHD\r\n";
        let (r, n) = parse(buf, one, true).unwrap();
        assert_eq!(r, Reply::Values(vec![(Vec::new(), b"abc".to_vec())]));
        let (r, m) = parse(&buf[n..], one, true).unwrap();
        assert_eq!(r, Reply::Values(vec![]));
        let (r, _) = parse(&buf[n + m..], one, true).unwrap();
        assert_eq!(r, Reply::Line(b"STORED".to_vec()));
        let multi = b"VA 1 f0 t-1 c1 ka\r\nx\r\nVA 2 f0 t-1 c2 kb\r\nyz\r\nMN\r\n";
        let (r, n) = parse(multi, Expect::Meta { until_mn: true }, true).unwrap();
        assert_eq!(
            r,
            Reply::Values(vec![
                (b"a".to_vec(), b"x".to_vec()),
                (b"b".to_vec(), b"yz".to_vec())
            ])
        );
        assert_eq!(n, multi.len());
        for cut in 0..n {
            assert!(parse(&multi[..cut], Expect::Meta { until_mn: true }, true).is_none());
        }
        let e = parse(b"CLIENT_ERROR bad data chunk\r\n", one, false)
            .unwrap()
            .0;
        assert_eq!(e, Reply::Error(b"CLIENT_ERROR bad data chunk".to_vec()));
    }

    #[test]
    fn data_containing_crlf() {
        let buf = b"VALUE k 0 4\r\n\r\n\r\n\r\nEND\r\n";
        let (r, n) = parse(buf, Expect::Values, true).unwrap();
        assert_eq!(
            r,
            Reply::Values(vec![(b"k".to_vec(), b"\r\n\r\n".to_vec())])
        );
        assert_eq!(n, buf.len());
    }
}
