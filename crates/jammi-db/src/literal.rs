//! Text forms of values that several parts read: vector literals (`[0.1, 0.2]`), in
//! vector-typed columns of mutable tables and in vector search arguments.

/// Parse `[0.1, 0.2, ...]` (brackets optional).
pub fn parse_vector_text(text: &str) -> Option<Vec<f32>> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']').as_bytes();
    if inner.trim_ascii().is_empty() {
        return None;
    }
    // A number and its comma take at least two bytes; most take eight or more.
    let mut out = Vec::with_capacity(inner.len() / 8 + 1);
    let mut rest = inner;
    loop {
        let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
        out.push(read_f32(rest[..end].trim_ascii())?);
        if end == rest.len() {
            return Some(out);
        }
        rest = &rest[end + 1..];
    }
}

/// One number, correctly rounded to f32 as the standard reader rounds it.
fn read_f32(number: &[u8]) -> Option<f32> {
    // lexical's reader is about twice as fast as the standard library's on these short
    // decimals and rounds the same; anything it refuses gets the standard reading.
    short_decimal(number)
        .or_else(|| lexical_core::parse::<f32>(number).ok())
        .or_else(|| std::str::from_utf8(number).ok()?.parse::<f32>().ok())
}

/// The value of eight ASCII digits, or `None` when one of the bytes is not a digit: all
/// eight checked and combined in a few word operations instead of a loop.
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    // Every byte is 0x30..=0x39: its high nibble is 3 and adding 6 does not carry into it.
    let all_digits = (word & 0xF0F0_F0F0_F0F0_F0F0) | ((word.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4);
    if all_digits != 0x3333_3333_3333_3333 {
        return None;
    }
    // Pairs, then quads, then all eight: the first digit is the lowest byte.
    let digits = word - 0x3030_3030_3030_3030;
    let pairs = (digits * 10 + (digits >> 8)) & 0x00FF_00FF_00FF_00FF;
    let quads = (pairs * 100 + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((quads * 10_000 + (quads >> 32)) & 0xFFFF_FFFF)
}

/// Powers of ten that f64 holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The common case of a vector literal's numbers (`-0.012345678`, `3.5e-2`) on a fast path,
/// or `None` for the general reader. The digits, read as an integer of at most 2^53, and a
/// power of ten of at most 10^22 are both exact in f64, so one multiplication or division
/// gives the correctly rounded f64 (Clinger's fast path). Rounding that once more to f32
/// gives the correctly rounded f32 unless the f64 fell exactly halfway between two f32
/// values — those, and values outside f32's normal range, go to the general reader.
fn short_decimal(number: &[u8]) -> Option<f32> {
    let (negative, mut i) = match number.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut any_digit = false;
    let mut scale: i32 = 0;
    let mut fraction = false;
    loop {
        // Eight digits at a time where there are eight (the fraction of `-0.012345678`).
        if let Some(eight) = number.get(i..i + 8).and_then(eight_digits) {
            mantissa = mantissa.checked_mul(100_000_000)?.checked_add(eight)?;
            any_digit = true;
            scale -= 8 * i32::from(fraction);
            i += 8;
            continue;
        }
        let Some(&byte) = number.get(i) else { break };
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
                any_digit = true;
                scale -= i32::from(fraction);
            }
            b'.' if !fraction => fraction = true,
            _ => break,
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    let mut exponent: i32 = 0;
    if let Some(b'e' | b'E') = number.get(i) {
        i += 1;
        let negative_exponent = match number.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let digits_from = i;
        while let Some(&byte @ b'0'..=b'9') = number.get(i) {
            exponent = exponent.checked_mul(10)?.checked_add(i32::from(byte - b'0'))?;
            i += 1;
        }
        if i == digits_from || exponent > 1000 {
            return None;
        }
        if negative_exponent {
            exponent = -exponent;
        }
    }
    if i != number.len() || mantissa > 1 << 53 {
        return None;
    }
    let power = exponent + scale;
    let magnitude = match power {
        0..=22 => mantissa as f64 * EXACT_POWERS_OF_TEN[power as usize],
        -22..=-1 => mantissa as f64 / EXACT_POWERS_OF_TEN[(-power) as usize],
        _ => return None,
    };
    if magnitude == 0.0 {
        return Some(if negative { -0.0 } else { 0.0 });
    }
    if !(f32::MIN_POSITIVE as f64..=f32::MAX as f64).contains(&magnitude) {
        return None;
    }
    // f32 keeps 24 of f64's 53 significant bits; the 29 dropped bits are exactly `100…0`
    // when the f64 sits halfway between two f32 values.
    if magnitude.to_bits() & 0x1FFF_FFFF == 0x1000_0000 {
        return None;
    }
    let single = magnitude as f32;
    Some(if negative { -single } else { single })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_text_parses_with_and_without_brackets() {
        assert_eq!(parse_vector_text("[1, -2.5]"), Some(vec![1.0, -2.5]));
        assert_eq!(parse_vector_text("1,2"), Some(vec![1.0, 2.0]));
        assert_eq!(parse_vector_text("[]"), None);
        assert_eq!(parse_vector_text("[1, x]"), None);
        assert_eq!(parse_vector_text("[1e-3, -0.5E2, +2, .5, 3., inf]"), Some(vec![0.001, -50.0, 2.0, 0.5, 3.0, f32::INFINITY]));
        // Correctly rounded, as the standard reader.
        for text in ["0.1", "0.0123456789", "-1.17549435e-38", "3.4028235e38", "0.30000001192092896"] {
            assert_eq!(parse_vector_text(text), Some(vec![text.parse::<f32>().unwrap()]), "{text}");
        }
        assert_eq!(parse_vector_text(" [ 1 ,\n 2 ] "), Some(vec![1.0, 2.0]));
        for bad in ["[1,,2]", "[1,]", "[-]", "[.]", "[1e]", "[1e+]", "[1.2.3]", "[1 2]", "[0x10]", "[--1]"] {
            assert_eq!(parse_vector_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn eight_digits_at_once() {
        assert_eq!(eight_digits(b"01234567"), Some(1_234_567));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(b"00000000"), Some(0));
        for bad in [b"0123456.", b"/1234567", b":1234567", b"1234567a", b"12 45678"] {
            assert_eq!(eight_digits(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_vector_text("[123456781234567.5, -0.0000000012345678]"), Some(vec![123456781234567.5, -0.0000000012345678]));
    }

    /// xorshift, so a failure reproduces.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn every_reading_rounds_as_the_standard_reader() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        let mut texts = vec!["-0".to_string(), "0.0".into(), "1e-40".into(), "3.4028236e38".into(), "16777217".into(), "9007199254740993".into(), "0.000000000000000000000001".into()];
        for _ in 0..200_000 {
            let bits = next(&mut state);
            let value = f32::from_bits(bits as u32);
            if !value.is_finite() {
                continue;
            }
            let digits = (bits >> 32) % 12 + 1;
            texts.push(value.to_string());
            texts.push(format!("{value:e}"));
            texts.push(format!("{:.*e}", digits as usize, value));
            // Short decimals of embedding-like magnitudes, including f32 halfway cases.
            let small = (value.to_bits() & 0x007F_FFFF) as f64 / (1u64 << 23) as f64 - 0.5;
            texts.push(format!("{:.*}", digits as usize + 2, small));
            texts.push(format!("{}", f32::from_bits(bits as u32 & 0x3FFF_FFFF) as f64 + f64::from(f32::EPSILON) / 2.0));
        }
        for text in &texts {
            let want: f32 = text.parse().unwrap();
            let got = parse_vector_text(text).unwrap_or_else(|| panic!("{text} unread"))[0];
            assert_eq!(got.to_bits(), want.to_bits(), "{text}: {got} against the standard {want}");
        }
    }
}
