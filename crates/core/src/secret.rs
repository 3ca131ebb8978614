//! Secret material: zeroized on drop, never printed, compared in constant time.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Owned secret bytes (keys, shared secrets, serialized private keys).
///
/// `Debug` prints only the length; the bytes are wiped when dropped.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

/// Equality in constant time (in the contents; lengths are not secret).
impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for SecretBytes {}

impl SecretBytes {
    /// Take ownership of `v`.
    pub fn new(v: Vec<u8>) -> Self {
        Self(v)
    }

    /// Copy from a slice.
    pub fn from_slice(s: &[u8]) -> Self {
        Self(s.to_vec())
    }

    /// Borrow the secret.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison with another byte string.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        ct_eq(&self.0, other)
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(v: Zeroizing<Vec<u8>>) -> Self {
        Self(v.to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {}])", self.0.len())
    }
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = SecretBytes::from_slice(b"hunter2");
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"));
        assert!(!d.contains("104"), "no byte values: {d}");
        assert!(d.contains("redacted; 7"));
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(SecretBytes::from_slice(b"k").ct_eq(b"k"));
        // `==` on secrets is the constant-time comparison.
        assert_eq!(
            SecretBytes::from_slice(b"key"),
            SecretBytes::from_slice(b"key")
        );
        assert_ne!(
            SecretBytes::from_slice(b"key"),
            SecretBytes::from_slice(b"kez")
        );
        assert_ne!(
            SecretBytes::from_slice(b"key"),
            SecretBytes::from_slice(b"ke")
        );
    }
}
