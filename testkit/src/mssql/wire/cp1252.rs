//! Windows-1252, the code page of the server's collation (SQL_Latin1_General_CP1_CI_AS),
//! in which `char`/`varchar` values travel. Hand-written because it is one small table
//! and the crate otherwise needs no encoding library.

/// Characters of bytes 0x80..=0x9F; `None` where WHATWG maps the byte to the C1
/// control of the same value.
const HIGH: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

/// Encodes `s`, replacing characters the code page lacks with `?` as SQL Server does
/// when it converts `nvarchar` to `varchar`.
pub fn encode(s: &str, dst: &mut Vec<u8>) {
    dst.reserve(s.len());
    for c in s.chars() {
        let cp = u32::from(c);
        let byte = match cp {
            0..=0x7F | 0xA0..=0xFF => Some(cp as u8),
            0x80..=0x9F => {
                // Only the five C1 controls WHATWG passes through map to themselves.
                let i = (cp - 0x80) as usize;
                HIGH[i].is_none().then_some(cp as u8)
            }
            _ => HIGH.iter().position(|h| *h == Some(c)).map(|i| 0x80 + i as u8),
        };
        dst.push(byte.unwrap_or(b'?'));
    }
}

/// Decodes code-page bytes to a string; total (every byte maps to a character).
pub fn decode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => HIGH[usize::from(b - 0x80)].unwrap_or(char::from(b)),
            _ => char::from(b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_latin1_and_the_windows_extras() {
        let s = "Grüße, €5 – “ok” Ÿ";
        let mut bytes = Vec::new();
        encode(s, &mut bytes);
        assert_eq!(bytes.len(), s.chars().count());
        assert_eq!(decode(&bytes), s);
    }

    #[test]
    fn unmappable_characters_become_question_marks() {
        let mut bytes = Vec::new();
        encode("日本", &mut bytes);
        assert_eq!(bytes, b"??");
    }
}
