//! Number parsing with the exact acceptance rules memcached 1.6 applies.
//!
//! memcached parses numbers with C's `strtol`/`strtoul`/`strtoull` and then
//! checks what follows the digits (`safe_strto*` in util.c). Clients notice
//! the differences (`+5` accepted, `12abc` refused, `-1` refused as a delta
//! but accepted as an exptime), so the same rules are reproduced here on
//! byte slices.

/// C's `isspace` in the "C" locale.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull`/`strtol` did with a string: the magnitude it read, the
/// sign, whether it overflowed, and where it stopped.
struct Scan {
    negative: bool,
    /// Magnitude, saturated at u64::MAX when `overflow`.
    magnitude: u64,
    overflow: bool,
    /// Index one past the last digit; 0 when no digits were read (strtol
    /// then leaves `endptr == str`).
    end: usize,
}

fn scan(s: &[u8]) -> Scan {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        let d = u64::from(s[i] - b'0');
        match magnitude.checked_mul(10).and_then(|m| m.checked_add(d)) {
            Some(m) => magnitude = m,
            None => {
                overflow = true;
                magnitude = u64::MAX;
            }
        }
        i += 1;
    }
    let end = if i == digits_start { 0 } else { i };
    Scan {
        negative,
        magnitude,
        overflow,
        end,
    }
}

/// memcached's rule for what may follow the number: a space character, or
/// the end of the token (the token must not be empty).
fn tail_ok(s: &[u8], end: usize) -> bool {
    if end == 0 {
        return false;
    }
    match s.get(end) {
        None => true,
        Some(&b) => is_c_space(b) || b == 0,
    }
}

/// `safe_strtoull`: unsigned 64-bit; a '-' is refused only when the
/// wrapped result would be negative as a signed number.
pub fn safe_strtoull(s: &[u8]) -> Option<u64> {
    let sc = scan(s);
    if sc.overflow || sc.end == 0 {
        return None;
    }
    let value = if sc.negative {
        sc.magnitude.wrapping_neg()
    } else {
        sc.magnitude
    };
    if !tail_ok(s, sc.end) {
        return None;
    }
    // memcached looks for the '-' with strchr: in the whole C string, not
    // only the digits. (On a stored value that string runs on past the
    // value into whatever memory follows it, up to a NUL byte; memcrab
    // looks at the value only.)
    if (value as i64) < 0 && s.iter().take_while(|&&b| b != 0).any(|&b| b == b'-') {
        return None;
    }
    Some(value)
}

/// `safe_strtoul` on a 64-bit host: `unsigned long` is 64 bits, so the
/// acceptance rules are those of `safe_strtoull`, and the caller truncates
/// to 32 bits as memcached's assignment to a `uint32_t` does.
pub fn safe_strtoul(s: &[u8]) -> Option<u32> {
    safe_strtoull(s).map(|v| v as u32)
}

/// `safe_strtol`: C's `strtol` into a 64-bit `long` (refused only on
/// overflow of that), then truncated to 32 bits by memcached's assignment:
/// `4000000000` reads as a negative number, as it does in memcached 1.6.18.
pub fn safe_strtol(s: &[u8]) -> Option<i32> {
    let sc = scan(s);
    if sc.end == 0 {
        return None;
    }
    // strtol on a 64-bit long: ERANGE beyond i64.
    let limit = if sc.negative {
        1u64 << 63
    } else {
        i64::MAX as u64
    };
    if sc.overflow || sc.magnitude > limit {
        return None;
    }
    let value: i64 = if sc.negative {
        (sc.magnitude as i64).wrapping_neg()
    } else {
        sc.magnitude as i64
    };
    if !tail_ok(s, sc.end) {
        return None;
    }
    Some(value as i32)
}

/// Appends `v` in decimal to `out`.
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    // The digits go left-aligned into a fixed-size buffer that is copied
    // whole (a constant-size copy compiles to a few moves, where a copy
    // of the digits alone is a call to memcpy), then the tail is cut.
    let digits = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut buf = [0u8; 20];
    let mut n = v;
    for d in buf[..digits].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let len = out.len();
    out.extend_from_slice(&buf);
    out.truncate(len + digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull_accepts_what_memcached_accepts() {
        assert_eq!(safe_strtoull(b"0"), Some(0));
        assert_eq!(safe_strtoull(b"42"), Some(42));
        assert_eq!(safe_strtoull(b"+42"), Some(42));
        assert_eq!(safe_strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(safe_strtoull(b"42\r\n"), Some(42));
        assert_eq!(safe_strtoull(b"42 "), Some(42));
        assert_eq!(safe_strtoull(b" 42"), Some(42));
        assert_eq!(safe_strtoull(b"-0"), Some(0));
    }

    #[test]
    fn strtoull_refuses_what_memcached_refuses() {
        assert_eq!(safe_strtoull(b""), None);
        assert_eq!(safe_strtoull(b"abc"), None);
        assert_eq!(safe_strtoull(b"12abc"), None);
        assert_eq!(safe_strtoull(b"-1"), None);
        assert_eq!(safe_strtoull(b"18446744073709551616"), None);
        assert_eq!(safe_strtoull(b"+"), None);
        assert_eq!(safe_strtoull(b"-"), None);
        // A '-' after the number counts when the number is at least 2^63.
        assert_eq!(safe_strtoull(b"9223372036854775808\t-"), None);
        assert_eq!(
            safe_strtoull(b"9223372036854775807\t-"),
            Some(i64::MAX as u64)
        );
        assert_eq!(safe_strtoull(b"9223372036854775808\0-"), Some(1 << 63));
    }

    #[test]
    fn strtol_limits() {
        assert_eq!(safe_strtol(b"-1"), Some(-1));
        assert_eq!(safe_strtol(b"2147483647"), Some(i32::MAX));
        assert_eq!(safe_strtol(b"-2147483648"), Some(i32::MIN));
        // Outside 32 bits memcached truncates rather than refuses.
        assert_eq!(safe_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(safe_strtol(b"-2147483649"), Some(i32::MAX));
        assert_eq!(safe_strtol(b"4294967297"), Some(1));
        assert_eq!(safe_strtol(b"9223372036854775807"), Some(-1));
        assert_eq!(safe_strtol(b"9223372036854775808"), None);
        assert_eq!(safe_strtol(b"99999999999999999999"), None);
        assert_eq!(safe_strtol(b"1x"), None);
        assert_eq!(safe_strtol(b""), None);
    }

    #[test]
    fn flags_truncate_like_memcached() {
        // memcached 1.6.18 stores flags through safe_strtoul into 32 bits.
        assert_eq!(safe_strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"4294967296"), Some(0));
        assert_eq!(safe_strtoul(b"-1"), None);
        assert_eq!(safe_strtoul(b"-0"), Some(0));
    }

    #[test]
    fn formats_numbers() {
        let mut v = Vec::new();
        write_u64(&mut v, 0);
        v.push(b' ');
        write_u64(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
        for (n, s) in [
            (9, "9"),
            (10, "10"),
            (99, "99"),
            (100, "100"),
            (1_000_001, "1000001"),
        ] {
            let mut v = b"x".to_vec();
            write_u64(&mut v, n);
            assert_eq!(v, format!("x{s}").as_bytes());
        }
    }
}
