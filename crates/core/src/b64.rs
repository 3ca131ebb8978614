//! Base64 (RFC 4648, standard alphabet, padded) through the `base64` crate,
//! recorded as [`Op::Base64Encode`]/[`Op::Base64Decode`] of
//! [`Lib::Rust`](crate::ops::Lib::Rust) on every call.

use crate::ops::{count, Lib, Op};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub use base64::DecodeError;

/// Encode `data`.
pub fn encode(data: impl AsRef<[u8]>) -> String {
    let d = data.as_ref();
    count(Op::Base64Encode { lib: Lib::Rust }, d.len());
    STANDARD.encode(d)
}

/// Decode `data` (no whitespace allowed: trim first).
pub fn decode(data: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    let d = data.as_ref();
    count(Op::Base64Decode { lib: Lib::Rust }, d.len());
    STANDARD.decode(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_round_trip() {
        let ((e, d), log) = crate::ops::recorded(|| {
            let e = encode(b"hello world");
            let d = decode(&e).unwrap();
            (e, d)
        });
        assert_eq!(e, "aGVsbG8gd29ybGQ=");
        assert_eq!(d, b"hello world");
        assert_eq!(log.get(&Op::Base64Encode { lib: Lib::Rust }).bytes, 11);
        assert_eq!(log.get(&Op::Base64Decode { lib: Lib::Rust }).bytes, 16);
        assert!(decode("!!").is_err());
    }
}
