//! Kubernetes resource quantities (`1500m`, `2`, `0.5`, `3Gi`, `1024Mi`, `1e3`) as whole
//! millicores and bytes, rounded up the way the scheduler rounds a request.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a Kubernetes quantity ({why}); e.g. 1500m, 2, 3Gi, 1024Mi")]
pub struct QuantityError {
    text: String,
    why: &'static str,
}

/// CPU in millicores.
pub fn cpu_millis(text: &str) -> Result<u64, QuantityError> {
    scaled(text, 1000)
}

/// Memory (or storage) in bytes.
pub fn bytes(text: &str) -> Result<u64, QuantityError> {
    scaled(text, 1)
}

/// `text` times `unit`, rounded up: the number, then one suffix (binary, decimal or exponent).
fn scaled(text: &str, unit: u128) -> Result<u64, QuantityError> {
    let fail = |why| QuantityError {
        text: text.to_string(),
        why,
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return Err(fail("no number"));
    }
    // (numerator, denominator) of the suffix's factor.
    let (num, den): (u128, u128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        exp if exp.starts_with(['e', 'E']) => {
            let power: u32 = exp[1..].parse().map_err(|_| fail("bad exponent"))?;
            if power > 18 {
                return Err(fail("too large"));
            }
            (10u128.pow(power), 1)
        }
        _ => return Err(fail("unknown suffix")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let fraction = &fraction[..fraction.len().min(9)];
    let scale = 10u128.pow(fraction.len() as u32);
    let digits: u128 = format!("{whole}{fraction}")
        .parse()
        .map_err(|_| fail("too large"))?;
    let numerator = digits
        .checked_mul(num)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| fail("too large"))?;
    let value = numerator.div_ceil(den * scale);
    u64::try_from(value).map_err(|_| fail("too large"))
}

/// Millicores as Kubernetes writes them (`1500m`, `2`).
pub struct Cpu(pub u64);

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

/// Bytes in the largest binary unit that divides them (`3Gi`, `1536Mi`).
pub struct Memory(pub u64);

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{suffix}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores_rounded_up() {
        assert_eq!(cpu_millis("1500m"), Ok(1500));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("0.0001"), Ok(1));
        assert_eq!(cpu_millis("250000u"), Ok(250));
        assert_eq!(cpu_millis("1e1"), Ok(10_000));
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(bytes("3Gi"), Ok(3 << 30));
        assert_eq!(bytes("1024Mi"), Ok(1 << 30));
        assert_eq!(bytes("128974848"), Ok(128_974_848));
        assert_eq!(bytes("129e6"), Ok(129_000_000));
        assert_eq!(bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(bytes("1k"), Ok(1000));
    }

    #[test]
    fn nonsense_is_an_error_naming_the_text() {
        for bad in [
            "",
            "Gi",
            "1.2.3",
            "3GB",
            "-1",
            "1e99",
            "99999999999999999999Ei",
            "1 Gi",
        ] {
            let err = bytes(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn printed_as_kubernetes_writes_them() {
        assert_eq!(Cpu(1500).to_string(), "1500m");
        assert_eq!(Cpu(2000).to_string(), "2");
        assert_eq!(Memory(3 << 30).to_string(), "3Gi");
        assert_eq!(Memory(1536 << 20).to_string(), "1536Mi");
        assert_eq!(Memory(1000).to_string(), "1000");
    }
}
