//! `X-Hub-Signature-256` verification.

use super::WebhookError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";
const DIGEST_LEN: usize = 32;

/// A webhook secret, keyed once so that each delivery only hashes its body.
#[derive(Clone)]
pub(crate) struct SignatureKey {
    keyed: HmacSha256,
}

impl std::fmt::Debug for SignatureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureKey([REDACTED])")
    }
}

impl SignatureKey {
    pub(crate) fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length (long ones are hashed), so this cannot fail.
        let keyed = match HmacSha256::new_from_slice(secret) {
            Ok(keyed) => keyed,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        };
        Self { keyed }
    }

    /// Checks `header` (the `X-Hub-Signature-256` value, if any) against `body`, in
    /// constant time.
    pub(crate) fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Result<(), WebhookError> {
        let header = header.ok_or(WebhookError::MissingSignature)?;
        let expected = decode_header(header)?;
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac.verify_slice(&expected)
            .map_err(|_| WebhookError::SignatureMismatch)
    }
}

fn decode_header(header: &[u8]) -> Result<[u8; DIGEST_LEN], WebhookError> {
    let hex_digits = header.trim_ascii().strip_prefix(PREFIX.as_bytes()).ok_or(
        WebhookError::MalformedSignature {
            reason: "it does not start with `sha256=`",
        },
    )?;
    if hex_digits.len() != DIGEST_LEN * 2 {
        return Err(WebhookError::MalformedSignature {
            reason: "wrong length",
        });
    }
    let mut digest = [0u8; DIGEST_LEN];
    hex::decode_to_slice(hex_digits, &mut digest).map_err(|_| {
        WebhookError::MalformedSignature {
            reason: "not hexadecimal",
        }
    })?;
    Ok(digest)
}

/// Checks a delivery's `X-Hub-Signature-256` header value against its raw `body`, keyed
/// with the webhook `secret`, in constant time.
///
/// `signature_header` is `None` when the header is absent, which is refused.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    signature_header: Option<&str>,
) -> Result<(), WebhookError> {
    SignatureKey::new(secret).verify(body, signature_header.map(str::as_bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn official_test_vector_passes() {
        verify_signature(SECRET, BODY, Some(SIGNATURE)).unwrap();
    }

    #[test]
    fn a_key_is_reusable_across_deliveries() {
        let key = SignatureKey::new(SECRET);
        key.verify(BODY, Some(SIGNATURE.as_bytes())).unwrap();
        key.verify(BODY, Some(SIGNATURE.as_bytes())).unwrap();
        assert!(matches!(
            key.verify(b"Hello, World?", Some(SIGNATURE.as_bytes())),
            Err(WebhookError::SignatureMismatch)
        ));
    }

    #[test]
    fn uppercase_hex_and_surrounding_spaces_are_accepted() {
        let upper = format!(" sha256={} ", SIGNATURE[PREFIX.len()..].to_uppercase());
        verify_signature(SECRET, BODY, Some(&upper)).unwrap();
    }

    #[test]
    fn the_debug_output_hides_the_key() {
        let shown = format!("{:?}", SignatureKey::new(SECRET));
        assert!(!shown.contains("Secret"), "{shown}");
    }
}
