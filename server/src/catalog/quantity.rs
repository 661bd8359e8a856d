//! Kubernetes resource quantities (`500m`, `2`, `4Gi`, `1.5e3`), parsed to
//! check them at start-up and to compare requests with limits. The text is
//! kept as written for the manifest; the number is only for checks.

/// The quantity's value in base units (cores, bytes, devices).
pub fn parse(text: &str) -> Result<f64, String> {
    let invalid =
        || format!("{text:?} is not a Kubernetes quantity (examples: 500m, 2, 1.5, 512Mi, 4Gi)");
    let text_trimmed = text.trim();
    if text_trimmed != text || text.is_empty() {
        return Err(invalid());
    }
    let number_end = text
        .char_indices()
        .find(|&(index, c)| !(c.is_ascii_digit() || c == '.' || (index == 0 && c == '+')))
        .map_or(text.len(), |(index, _)| index);
    let (number, suffix) = text.split_at(number_end);
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err(invalid());
    }
    let mantissa: f64 = digits.parse().map_err(|_| invalid())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| invalid())?;
            10f64.powi(power)
        }
        _ => return Err(invalid()),
    };
    Ok(mantissa * multiplier)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_suffixes_kubernetes_accepts_scale_the_number() {
        assert_eq!(parse("2").unwrap(), 2.0);
        assert_eq!(parse("500m").unwrap(), 0.5);
        assert_eq!(parse("1.5").unwrap(), 1.5);
        assert_eq!(parse("4Gi").unwrap(), 4.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse("512Mi").unwrap(), 512.0 * 1024.0 * 1024.0);
        assert_eq!(parse("1G").unwrap(), 1e9);
        assert_eq!(parse("1e3").unwrap(), 1000.0);
        assert_eq!(parse("+1k").unwrap(), 1000.0);
    }

    #[test]
    fn anything_else_is_refused_with_examples() {
        for bad in [
            "", " 2", "2 ", "two", "-1", "1.2.3", "4GB", "4gi", "m", "1e", ".",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("not a Kubernetes quantity"), "{bad}: {err}");
        }
    }
}
