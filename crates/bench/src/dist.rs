//! Workload distributions: key popularity (uniform or zipfian), key and
//! value sizes (fixed or a uniform range), TTLs, and the deterministic
//! value each key carries (so any hit can be verified).

use std::fmt;
use std::str::FromStr;

/// A small fast PRNG (xorshift64*), one per connection.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// A size: fixed (`100`) or a uniform range (`10-20`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    pub min: usize,
    pub max: usize,
}

impl FromStr for SizeRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a, b),
            None => (s, s),
        };
        let min: usize = a.trim().parse().map_err(|_| format!("bad size {s:?}"))?;
        let max: usize = b.trim().parse().map_err(|_| format!("bad size {s:?}"))?;
        if min > max {
            return Err(format!("bad size range {s:?}: min above max"));
        }
        Ok(SizeRange { min, max })
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl SizeRange {
    /// The size for a given seed, uniform over the range.
    pub fn pick(&self, seed: u64) -> usize {
        self.min + (seed % (self.max - self.min + 1) as u64) as usize
    }

    pub fn mean(&self) -> f64 {
        (self.min + self.max) as f64 / 2.0
    }
}

/// Which keys are asked for.
#[derive(Debug, Clone)]
pub enum Popularity {
    Uniform,
    /// Zipfian with skew `s`: key i has weight 1/(i+1)^s.
    Zipf {
        skew: f64,
        cdf: Vec<f64>,
    },
}

impl Popularity {
    pub fn parse(s: &str, keys: u64) -> Result<Popularity, String> {
        if s == "uniform" {
            return Ok(Popularity::Uniform);
        }
        let skew = match s.strip_prefix("zipf") {
            Some("") => 0.99,
            Some(rest) => rest
                .trim_start_matches(':')
                .parse()
                .map_err(|_| format!("bad zipf skew in {s:?}"))?,
            None => return Err(format!("unknown popularity {s:?} (uniform, zipf, zipf:S)")),
        };
        Ok(Popularity::zipf(skew, keys))
    }

    pub fn zipf(skew: f64, keys: u64) -> Popularity {
        let mut cdf = Vec::with_capacity(keys as usize);
        let mut sum = 0.0;
        for i in 0..keys {
            sum += 1.0 / ((i + 1) as f64).powf(skew);
            cdf.push(sum);
        }
        for c in cdf.iter_mut() {
            *c /= sum;
        }
        Popularity::Zipf { skew, cdf }
    }

    /// A key index in [0, keys).
    pub fn pick(&self, rng: &mut Rng, keys: u64) -> u64 {
        match self {
            Popularity::Uniform => rng.below(keys),
            Popularity::Zipf { cdf, .. } => {
                let u = rng.unit();
                let i = cdf.partition_point(|&c| c < u);
                (i as u64).min(keys.saturating_sub(1))
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Popularity::Uniform => "uniform".into(),
            Popularity::Zipf { skew, .. } => format!("zipf:{skew}"),
        }
    }
}

/// splitmix64: a hash of the key index, for sizes and contents.
pub fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key `i`: a prefix and the index, padded to the key's size.
pub fn key(i: u64, size: SizeRange, out: &mut Vec<u8>) {
    out.clear();
    let digits = format!("{i}");
    let want = size.pick(mix(i ^ 0x5555)).max(digits.len() + 1);
    out.push(b'k');
    out.resize(want - digits.len(), b'0');
    out.extend_from_slice(digits.as_bytes());
}

/// The value key `i` always carries: its length and bytes depend on `i`
/// alone, so any hit can be checked.
pub fn value(i: u64, size: SizeRange, out: &mut Vec<u8>) {
    out.clear();
    let len = size.pick(mix(i));
    let mut h = mix(i ^ 0xabcd);
    for n in 0..len {
        if n % 8 == 0 {
            h = mix(h);
        }
        out.push(b'a' + ((h >> ((n % 8) * 8)) as u8 % 26));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_ranges_parse_and_stay_inside() {
        assert_eq!(
            "100".parse::<SizeRange>().unwrap(),
            SizeRange { min: 100, max: 100 }
        );
        let r: SizeRange = "10-20".parse().unwrap();
        assert_eq!(r, SizeRange { min: 10, max: 20 });
        assert!("20-10".parse::<SizeRange>().is_err());
        assert!("x".parse::<SizeRange>().is_err());
        let mut seen = [false; 11];
        for s in 0..1000 {
            let v = r.pick(mix(s));
            assert!((10..=20).contains(&v));
            seen[v - 10] = true;
        }
        assert!(seen.iter().all(|&b| b), "every size occurs");
        assert_eq!(r.mean(), 15.0);
    }

    #[test]
    fn uniform_popularity_covers_keys_evenly() {
        let mut rng = Rng::new(1);
        let p = Popularity::Uniform;
        let mut counts = vec![0u32; 10];
        for _ in 0..100_000 {
            counts[p.pick(&mut rng, 10) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{c}");
        }
    }

    #[test]
    fn zipf_favours_the_first_keys() {
        let mut rng = Rng::new(7);
        let p = Popularity::parse("zipf:1.0", 1000).unwrap();
        let mut counts = vec![0u32; 1000];
        for _ in 0..200_000 {
            counts[p.pick(&mut rng, 1000) as usize] += 1;
        }
        // With skew 1, key 0 gets 1/H(1000) ~ 13.4% and key 1 half of that.
        let share0 = f64::from(counts[0]) / 200_000.0;
        assert!((0.12..0.15).contains(&share0), "{share0}");
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
        assert!(counts[999] < counts[0] / 100);
        assert!(Popularity::parse("bogus", 10).is_err());
    }

    #[test]
    fn keys_and_values_are_deterministic() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        key(42, "10".parse().unwrap(), &mut a);
        assert_eq!(a, b"k000000042");
        key(42, "10-20".parse().unwrap(), &mut a);
        key(42, "10-20".parse().unwrap(), &mut b);
        assert_eq!(a, b);
        assert!((10..=20).contains(&a.len()));
        value(7, "100-200".parse().unwrap(), &mut a);
        value(7, "100-200".parse().unwrap(), &mut b);
        assert_eq!(a, b);
        assert!((100..=200).contains(&a.len()));
        value(8, "100-200".parse().unwrap(), &mut b);
        assert_ne!(a, b);
        // Keys never lose their index, however small the size asked.
        key(123_456, "2".parse().unwrap(), &mut a);
        assert_eq!(a, b"k123456");
    }
}
