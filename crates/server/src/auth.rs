//! Authentication: the user list, SASL PLAIN for the binary protocol
//! (`-S`) and memcached's ASCII auth tokens (`-Y`).
//!
//! ```text
//!  -Y FILE / -o sasl_file=FILE / $MEMCACHED_SASL_PWDB / $SASL_CONF_PATH
//!        ──► Users::load (lines of user:password)
//!  binary SaslAuth "PLAIN" [authzid]\0user\0pass ──► plain() ──► Users::check
//!  ASCII  "set <any> <any> <any> <n>\r\nuser pass\r\n" ──► Users::check
//! ```
//!
//! Passwords are compared in constant time: every entry is compared in
//! full, whatever matched before, and no comparison stops at the first
//! differing byte.

use std::path::{Path, PathBuf};

/// Longest line of a user file memcached reads (its fgets limit).
const MAX_ENTRY_LEN: usize = 256;

/// The users allowed in, with their passwords.
#[derive(Debug, Clone, Default)]
pub struct Users {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where they came from (shown by `stats settings` for `-Y`).
    pub path: PathBuf,
}

impl Users {
    /// Reads a file of `user:password` lines (memcached's format for
    /// `-Y` and for its SASL password database). A line ends at `\n` or
    /// `\r`; blank lines are skipped; a line without `:` is an error.
    pub fn load(path: &Path) -> Result<Users, String> {
        let data = std::fs::read(path).map_err(|e| {
            format!(
                "Could not open authfile [{}] for reading, error {e}",
                path.display()
            )
        })?;
        Self::parse(&data, path)
    }

    /// Reads the lines of such a file (`path` names it in errors).
    pub fn parse(data: &[u8], path: &Path) -> Result<Users, String> {
        let mut entries = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let line = line.split(|&b| b == b'\r').next().unwrap_or_default();
            if line.is_empty() {
                continue;
            }
            if line.len() > MAX_ENTRY_LEN {
                return Err(format!(
                    "authfile [{}] has an entry longer than {MAX_ENTRY_LEN} bytes",
                    path.display()
                ));
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                return Err(format!(
                    "authfile [{}] has a malformed entry. Should be 'user:password'",
                    path.display()
                ));
            };
            entries.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        }
        Ok(Users {
            entries,
            path: path.to_path_buf(),
        })
    }

    /// Whether `user` may log in with `pass`, in time that depends only
    /// on the lengths of the entries and of the input.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        let mut ok = 0u8;
        for (u, p) in &self.entries {
            ok |= ct_eq(u, user) & ct_eq(p, pass);
        }
        ok == 1
    }
}

/// 1 when equal, 0 when not; every byte of the longer one is read.
fn ct_eq(a: &[u8], b: &[u8]) -> u8 {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // Fold all bits of `diff` into one without a branch.
    let d = u32::from(diff);
    (1 ^ ((d | d.wrapping_neg()) >> 31)) as u8
}

/// Splits a SASL PLAIN message, `[authzid] NUL authcid NUL passwd`, into
/// user and password. An authorization identity other than the user
/// itself is refused (memcrab has no notion of acting for another user).
pub fn plain(msg: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut it = msg.splitn(3, |&b| b == 0);
    let authzid = it.next()?;
    let user = it.next()?;
    let pass = it.next()?;
    if !authzid.is_empty() && authzid != user {
        return None;
    }
    Some((user, pass))
}

/// Where `-S` finds its users: `-o sasl_file=`, else the file named by
/// `$MEMCACHED_SASL_PWDB`, else the `sasldb_path` of `memcached.conf` in
/// `$SASL_CONF_PATH` (Cyrus SASL's configuration; the file it names must
/// be a `user:password` text file, not a Berkeley DB sasldb2).
pub fn sasl_users(sasl_file: Option<&Path>) -> Result<Users, String> {
    if let Some(p) = sasl_file {
        return Users::load(p);
    }
    if let Some(p) = std::env::var_os("MEMCACHED_SASL_PWDB") {
        return Users::load(Path::new(&p));
    }
    let Some(dir) = std::env::var_os("SASL_CONF_PATH") else {
        return Err(
            "Failed to locate a config path\nError initializing sasl: memcrab reads \
                    its users from -o sasl_file=FILE, $MEMCACHED_SASL_PWDB or the sasldb_path \
                    of $SASL_CONF_PATH/memcached.conf (lines of user:password)"
                .into(),
        );
    };
    let dir = PathBuf::from(dir);
    let conf = if dir.is_dir() {
        dir.join("memcached.conf")
    } else {
        dir
    };
    let text = std::fs::read_to_string(&conf).map_err(|e| {
        format!(
            "Error initializing sasl: cannot read {}: {e}",
            conf.display()
        )
    })?;
    let mut db = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "sasldb_path" => db = Some(PathBuf::from(v.trim())),
            "mech_list" => {
                let v = v.to_ascii_lowercase();
                if !v.split_whitespace().any(|m| m == "plain") {
                    return Err(format!(
                        "Error initializing sasl: {} lists no PLAIN mechanism (memcrab serves PLAIN only)",
                        conf.display()
                    ));
                }
            }
            _ => {}
        }
    }
    let db = db.ok_or_else(|| {
        format!(
            "Error initializing sasl: {} names no sasldb_path (a file of user:password lines)",
            conf.display()
        )
    })?;
    let bytes = std::fs::read(&db)
        .map_err(|e| format!("Error initializing sasl: cannot read {}: {e}", db.display()))?;
    if bytes.contains(&0) {
        return Err(format!(
            "Error initializing sasl: {} is a database, not a text file of user:password \
             lines (memcrab does not read sasldb2 files)",
            db.display()
        ));
    }
    Users::parse(&bytes, &db)
}

/// A connection's input while it awaits its ASCII auth token (`-Y`).
#[derive(Debug, PartialEq, Eq)]
pub enum AsciiAuth<'a> {
    /// This many bytes in all are needed (0: read more).
    Need(usize),
    /// No newline in the first 2048 bytes: memcached hangs up.
    Close,
    /// Not a `set` with a length: "CLIENT_ERROR unauthenticated"; the
    /// line is used.
    NotAuth { used: usize },
    /// A data block far longer than any token: refused as it streams past
    /// (`swallow` bytes after the `used` line), never buffered.
    TooLong { used: usize, swallow: u64 },
    /// The data block arrived: user and password, or the error line.
    Token {
        used: usize,
        token: Result<(&'a [u8], &'a [u8]), &'static str>,
    },
}

/// The longest token data block buffered.
pub const MAX_TOKEN_BLOCK: usize = 64 * 1024;
/// memcached closes an auth-awaiting connection with no newline by then.
const MAX_AUTH_LINE: usize = 2048;

fn tokens(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(|&c| c == b' ').filter(|t| !t.is_empty())
}

/// Reads memcached's ASCII auth command, `set <key> <flags> <exptime>
/// <bytes>\r\n<user> <password>\r\n` (key, flags and exptime ignored).
pub fn ascii_token(avail: &[u8]) -> AsciiAuth<'_> {
    let Some(nl) = memchr::memchr(b'\n', avail) else {
        return if avail.len() > MAX_AUTH_LINE {
            AsciiAuth::Close
        } else {
            AsciiAuth::Need(0)
        };
    };
    let line = &avail[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut t = tokens(line);
    let (cmd, size) = (t.next(), t.nth(3));
    let size = match (cmd, size) {
        (Some(b"set"), Some(n)) => memcrab_proto::num::safe_strtoul(n),
        _ => None,
    };
    let Some(size) = size else {
        return AsciiAuth::NotAuth { used: nl + 1 };
    };
    let block = size as usize + 2;
    if block > MAX_TOKEN_BLOCK {
        return AsciiAuth::TooLong {
            used: nl + 1,
            swallow: u64::from(size) + 2,
        };
    }
    let used = nl + 1 + block;
    if avail.len() < used {
        return AsciiAuth::Need(used);
    }
    let data = &avail[nl + 1..used];
    let token = if !data.ends_with(b"\r\n") {
        Err("CLIENT_ERROR bad command line termination")
    } else {
        // memcached reads the block as a C string: a NUL ends it.
        let body = &data[..block - 2];
        let body = body.split(|&c| c == 0).next().unwrap_or_default();
        let mut t = tokens(body);
        match (t.next(), t.next()) {
            (Some(user), Some(pass)) => Ok((user, pass)),
            _ => Err("CLIENT_ERROR bad authentication token format"),
        }
    };
    AsciiAuth::Token { used, token }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> Users {
        Users::parse(text.as_bytes(), Path::new("t")).unwrap()
    }

    #[test]
    fn a_user_file_is_read_as_memcached_reads_it() {
        let u = users("alice:secret\r\nbob:hunter2\n\ncarol:pa:ss\ndave:");
        assert_eq!(u.entries.len(), 4);
        assert!(u.check(b"alice", b"secret"));
        assert!(u.check(b"bob", b"hunter2"));
        assert!(u.check(b"carol", b"pa:ss"), "only the first colon splits");
        assert!(u.check(b"dave", b""));
        assert!(!u.check(b"alice", b"secre"));
        assert!(!u.check(b"alice", b"secrets"));
        assert!(!u.check(b"alice", b"hunter2"));
        assert!(!u.check(b"alic", b"secret"));
        assert!(!u.check(b"", b""));
        let bad = Users::parse(b"alice secret\n", Path::new("f")).unwrap_err();
        assert!(bad.contains("malformed entry"), "{bad}");
        assert!(Users::load(Path::new("/nonexistent/x"))
            .unwrap_err()
            .starts_with("Could not open authfile"));
    }

    #[test]
    fn constant_time_equality_is_equality() {
        for (a, b) in [(&b""[..], &b""[..]), (b"a", b"a"), (b"abc", b"abc")] {
            assert_eq!(ct_eq(a, b), 1);
        }
        for (a, b) in [
            (&b""[..], &b"a"[..]),
            (b"a", b"b"),
            (b"abc", b"abd"),
            (b"ab", b"ab\0"),
            (b"\x80", b"\0"),
        ] {
            assert_eq!(ct_eq(a, b), 0, "{a:?} {b:?}");
            assert_eq!(ct_eq(b, a), 0, "{a:?} {b:?}");
        }
    }

    #[test]
    fn ascii_tokens_are_read_as_memcached_reads_them() {
        use AsciiAuth::*;
        let ok = |u: &'static [u8], p: &'static [u8]| Ok((u, p));
        assert_eq!(
            ascii_token(b"set x 0 0 12\r\nalice secret\r\n"),
            Token {
                used: 28,
                token: ok(b"alice", b"secret")
            }
        );
        assert_eq!(
            ascii_token(b"set x 0 0 12 7 8\r\nalice secret\r\nget"),
            Token {
                used: 32,
                token: ok(b"alice", b"secret")
            }
        );
        assert_eq!(
            ascii_token(b"set x 0 0 14\r\n alice  secret\r\n"),
            Token {
                used: 30,
                token: ok(b"alice", b"secret")
            }
        );
        assert_eq!(
            ascii_token(b"set x 0 0 17\r\nalice secret junk\r\n"),
            Token {
                used: 33,
                token: ok(b"alice", b"secret")
            }
        );
        assert_eq!(ascii_token(b"set x 0 0 12\r\nalice secret"), Need(28));
        assert_eq!(ascii_token(b"set x 0 0 12\r\n"), Need(28));
        assert_eq!(ascii_token(b"set x 0 0"), Need(0));
        assert_eq!(ascii_token(&[b'a'; 2049]), Close);
        for line in [
            &b"get k\r\n"[..],
            b"version\r\n",
            b"set x 0 0\r\n",
            b"set x 0 0 -1\r\n",
            b"set x 0 0 abc\r\n",
            b"sets x 0 0 1\r\n",
        ] {
            assert_eq!(ascii_token(line), NotAuth { used: line.len() }, "{line:?}");
        }
        let format = Err("CLIENT_ERROR bad authentication token format");
        assert_eq!(
            ascii_token(b"set x 0 0 5\r\nalice\r\n"),
            Token {
                used: 20,
                token: format
            }
        );
        assert_eq!(
            ascii_token(b"set x 0 0 5\r\nal\0ce\r\n"),
            Token {
                used: 20,
                token: format
            }
        );
        let term = Err("CLIENT_ERROR bad command line termination");
        assert_eq!(
            ascii_token(b"set x 0 0 12\r\nalice secret\rX"),
            Token {
                used: 28,
                token: term
            }
        );
        assert_eq!(
            ascii_token(b"set x 0 0 100000\r\n"),
            TooLong {
                used: 18,
                swallow: 100_002
            }
        );
        assert_eq!(
            ascii_token(b"set x 0 0 4294967295\r\n"),
            TooLong {
                used: 22,
                swallow: 4_294_967_297
            }
        );
    }

    #[test]
    fn plain_messages_split() {
        assert_eq!(
            plain(b"\0alice\0secret"),
            Some((&b"alice"[..], &b"secret"[..]))
        );
        assert_eq!(
            plain(b"alice\0alice\0se\0cret"),
            Some((&b"alice"[..], &b"se\0cret"[..]))
        );
        assert_eq!(plain(b"bob\0alice\0secret"), None);
        assert_eq!(plain(b"alicesecret"), None);
        assert_eq!(plain(b"\0alice"), None);
        assert_eq!(plain(b""), None);
    }
}
