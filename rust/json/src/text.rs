//! JSON strings: the escaper (for writing), the escape decoder (for reading) and the scan for
//! the bytes either has to look at (`"`, `\`, control characters), 16 bytes at a time.

/// Appends `text` to `out` as the inside of a JSON string (RFC 8259 section 7): `\"`, `\\`,
/// `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00XX`; everything else,
/// non-ASCII included, copied as is. The one JSON escaper: the writer's strings and keys all
/// go through it.
///
/// Checks that `text` is UTF-8 on the way (Arrow and Parquet data need not be): on invalid
/// UTF-8, returns the index of the first byte that is not, with part of `text` in `out`.
pub(crate) fn escape_into(mut text: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let len = text.len();
    loop {
        let Some(plain) = skip_plain_utf8(text) else {
            let valid = std::str::from_utf8(text).map_or_else(|e| e.valid_up_to(), |_| 0);
            return Err(len - text.len() + valid);
        };
        out.extend_from_slice(&text[..plain]);
        let Some(&special) = text.get(plain) else {
            return Ok(());
        };
        match special {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            control => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(control >> 4) as usize],
                HEX[(control & 0xf) as usize],
            ]),
        }
        text = &text[plain + 1..];
    }
}

/// Decodes the escape sequence at the start of `bytes` (which begins with `\\`) into `out`
/// and returns how many bytes it took; `None` for anything JSON does not allow there: an
/// unknown escape, `\\u` without four hex digits, or a surrogate that is not half of a
/// well-formed `\\uD8xx\\uDCxx` pair (UTF-8 cannot hold it).
pub(crate) fn unescape(bytes: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let byte = match *bytes.get(1)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let mut code = hex4(bytes.get(2..6)?)?;
            let mut used = 6;
            if (0xD800..0xDC00).contains(&code) {
                if bytes.get(6..8)? != b"\\u" {
                    return None;
                }
                let low = hex4(bytes.get(8..12)?)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return None;
                }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                used = 12;
            }
            let mut utf8 = [0u8; 4];
            // A lone low surrogate is no character: char::from_u32 refuses it.
            out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut utf8).as_bytes());
            return Some(used);
        }
        _ => return None,
    };
    out.push(byte);
    Some(2)
}

/// Four hex digits (and nothing else: `from_str_radix` alone would take a leading `+`).
pub(crate) fn hex4(digits: &[u8]) -> Option<u32> {
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// How many leading bytes of `bytes` need no escaping in a JSON string: none of `"`, `\` or a
/// control character (< 0x20). This is where JSON reading and writing spend their time, so it
/// tests 16 bytes at a time with SSE2 (part of every x86-64 CPU), or 8 at a time in a `u64`
/// elsewhere.
#[inline]
pub(crate) fn skip_plain(bytes: &[u8]) -> usize {
    skip::<false>(bytes)
}

/// Like [`skip_plain`], checking that the bytes skipped are UTF-8; `None` if they are not.
#[inline]
pub(crate) fn skip_plain_utf8(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        i += skip::<true>(&bytes[i..]);
        match bytes.get(i) {
            Some(&lead) if lead >= 0x80 => {
                let len = match lead {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => return None,
                };
                // std checks continuation bytes, overlong forms, surrogates and the range.
                std::str::from_utf8(bytes.get(i..i + len)?).ok()?;
                i += len;
            }
            _ => return Some(i),
        }
    }
}

/// The leading bytes that are not `"`, `\` or a control character, nor, if `STOP_NON_ASCII`,
/// a byte >= 0x80.
#[inline]
fn skip<const STOP_NON_ASCII: bool>(bytes: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    let i = skip_sse2::<STOP_NON_ASCII>(bytes);
    #[cfg(not(target_arch = "x86_64"))]
    let i = skip_swar::<STOP_NON_ASCII>(bytes);
    let stops = |b: u8| matches!(b, b'"' | b'\\' | 0..=0x1f) || (STOP_NON_ASCII && b >= 0x80);
    i + bytes[i..]
        .iter()
        .position(|&b| stops(b))
        .unwrap_or(bytes.len() - i)
}

/// Whole 16-byte blocks with no stop byte, plus the offset of the first stop byte if it lies
/// in the next block.
#[cfg(target_arch = "x86_64")]
#[inline]
fn skip_sse2<const STOP_NON_ASCII: bool>(bytes: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut i = 0;
    // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are always available;
    // every load reads 16 bytes starting at `i` with `i + 16 <= bytes.len()`, inside the slice.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let control_max = _mm_set1_epi8(0x1f);
        while i + 16 <= bytes.len() {
            let v = _mm_loadu_si128(bytes.as_ptr().add(i) as *const __m128i);
            // min(v, 0x1f) == v exactly for the (unsigned) bytes <= 0x1f.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, control_max), v);
            let hits = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                control,
            );
            let mut mask = _mm_movemask_epi8(hits);
            if STOP_NON_ASCII {
                mask |= _mm_movemask_epi8(v); // the high bit of each byte
            }
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    i
}

/// The same eight bytes at a time in a `u64` ("SWAR", SIMD within a register).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn skip_swar<const STOP_NON_ASCII: bool>(bytes: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(word);
        // A byte's high bit is set in `zero(v)` iff that byte of `v` is 0, and in `below`
        // iff that byte of `x` is < 0x20 (`!x` rules out bytes >= 0x80). Borrows can only
        // mark bytes above a true hit, so the lowest marked byte is the first real one.
        let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
        let below = x.wrapping_sub(LO * 0x20) & !x & HI;
        let mut hits = zero(x ^ (LO * b'"' as u64)) | zero(x ^ (LO * b'\\' as u64)) | below;
        if STOP_NON_ASCII {
            hits |= x & HI;
        }
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::{skip_plain, skip_plain_utf8, unescape};

    #[test]
    fn skip_plain_stops_at_the_first_special_byte_in_any_lane() {
        for special in [b'"', b'\\', b'\n', 0u8, 0x1f] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = special;
                if at + 1 < 20 {
                    bytes[at + 1] = b'"';
                }
                assert_eq!(skip_plain(&bytes), at, "special {special:#x} at {at}");
            }
        }
        let utf8 = "éé日本😀 plain ascii text".as_bytes();
        assert_eq!(skip_plain(utf8), utf8.len());
        assert_eq!(skip_plain(b"\x20\x7f\x80\xff"), 4);
    }

    #[test]
    fn skip_plain_utf8_accepts_utf8_and_refuses_the_rest() {
        let text = "aé日😀 plain ascii text, long enough for a block\"".as_bytes();
        assert_eq!(skip_plain_utf8(text), Some(text.len() - 1));
        for bad in [
            &b"ab\xff"[..],
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xe6\x97",
            b"\xf5\x80\x80\x80",
        ] {
            let mut bytes = b"0123456789abcdef0123".to_vec();
            bytes.extend_from_slice(bad);
            assert_eq!(skip_plain_utf8(&bytes), None, "{bad:x?}");
        }
    }

    #[test]
    fn unescape_decodes_every_json_escape_and_reports_its_length() {
        let cases: [(&[u8], &str, usize); 11] = [
            (br#"\"rest"#, "\"", 2),
            (br"\\", "\\", 2),
            (br"\/", "/", 2),
            (br"\b", "\u{8}", 2),
            (br"\f", "\u{c}", 2),
            (br"\n", "\n", 2),
            (br"\r", "\r", 2),
            (br"\t", "\t", 2),
            (br"\u00e9x", "é", 6),
            (br"\u65E5", "日", 6),
            (br"\ud83d\ude00!", "😀", 12),
        ];
        for (escape, text, used) in cases {
            let mut out = b"prefix".to_vec();
            assert_eq!(unescape(escape, &mut out), Some(used), "{escape:?}");
            assert_eq!(out, [b"prefix", text.as_bytes()].concat(), "{escape:?}");
        }
    }

    #[test]
    fn unescape_refuses_what_json_does_not_allow() {
        for bad in [
            &br"\x"[..],
            br"\",
            br"\u12",
            br"\u+123",
            br"\u12g4",
            br"\ud83d",       // a high surrogate alone
            br"\ud83dx",      // ... or followed by something else
            br"\ud83d\u0041", // ... or by a character that is not a low surrogate
            br"\ude00",       // a low surrogate alone
        ] {
            assert_eq!(unescape(bad, &mut Vec::new()), None, "{bad:?}");
        }
    }
}
