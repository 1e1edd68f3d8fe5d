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
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(&buf[from..], b"\r\n").map(|p| from + p)
}

fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// Parses one reply from the start of `buf`. Returns the reply and the
/// bytes it took, or None when more bytes are needed. `keep_data` copies
/// values out (for verification); otherwise only keys are kept.
pub fn parse(buf: &[u8], expect: Expect, keep_data: bool) -> Option<(Reply, usize)> {
    match expect {
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
