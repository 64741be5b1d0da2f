//! Checks a JWT issuer's key material by the proxy's rules before it is stored, so a bad key
//! is a 422 naming `key_material` now rather than an issuer the proxy silently skips later.
//! The material itself never appears in an error.

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::ApiError;

/// Shortest HS256 secret, in bytes (the proxy's limit).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus, in bits (the proxy's limit).
pub const MIN_RSA_BITS: usize = 2048;
/// Longest key material accepted (a 16384-bit RSA PEM is well below).
const MAX_KEY_MATERIAL_BYTES: usize = 16 * 1024;

const FIELD: &str = "key_material";

/// The algorithms an issuer may pin, as stored in `jwt_issuers.algorithm`.
pub const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// Fails with a 422 naming `key_material` unless `material` is a usable key for `algorithm`
/// (which must be one of [`ALGORITHMS`]).
pub fn check(algorithm: &str, material: &str) -> Result<(), ApiError> {
    if material.len() > MAX_KEY_MATERIAL_BYTES {
        return Err(ApiError::invalid(
            FIELD,
            format!("must be at most {MAX_KEY_MATERIAL_BYTES} bytes"),
        ));
    }
    let not_pem = |kind: &str| {
        ApiError::invalid(
            FIELD,
            format!("must be a PEM {kind} public key (-----BEGIN PUBLIC KEY-----)"),
        )
    };
    let (algorithm, key) = match algorithm {
        "HS256" => {
            if material.len() < MIN_HS256_SECRET_BYTES {
                return Err(ApiError::invalid(
                    FIELD,
                    format!("an HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"),
                ));
            }
            return Ok(());
        }
        "RS256" => {
            let key = DecodingKey::from_rsa_pem(material.as_bytes()).map_err(|_| not_pem("RSA"))?;
            let der = key.try_get_as_bytes().map_err(|_| not_pem("RSA"))?;
            let (modulus, _) = (DEFAULT_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(der)
            .map_err(|_| not_pem("RSA"))?;
            let bits = modulus
                .iter()
                .position(|byte| *byte != 0)
                .map_or(0, |first| {
                    (modulus.len() - first) * 8 - modulus[first].leading_zeros() as usize
                });
            if bits < MIN_RSA_BITS {
                return Err(ApiError::invalid(
                    FIELD,
                    format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
            (Algorithm::RS256, key)
        }
        "ES256" => (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(material.as_bytes()).map_err(|_| not_pem("P-256"))?,
        ),
        "EdDSA" => {
            let key =
                DecodingKey::from_ed_pem(material.as_bytes()).map_err(|_| not_pem("Ed25519"))?;
            if key
                .try_get_as_bytes()
                .map_or(true, |bytes| bytes.len() != 32)
            {
                return Err(not_pem("Ed25519"));
            }
            (Algorithm::EdDSA, key)
        }
        _ => {
            return Err(ApiError::invalid(
                "algorithm",
                "must be one of HS256, RS256, ES256, EdDSA",
            ));
        }
    };
    // Building a verifier parses the key (the EC point, the Ed25519 point) as the proxy will.
    (DEFAULT_PROVIDER.verifier_factory)(&algorithm, &key).map_err(|_| {
        ApiError::invalid(FIELD, "is not a usable public key for the chosen algorithm")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8410 §10.1.
    pub const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PUBLIC KEY-----\n";
    pub const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeRAvAPjASzj8p9Ewxzm4PY2idDnT\n\
        m+6vk4PiNO3Dtdqkzrg+RLsQOd0pCJEj+XAlCBKnmEVDeUODfOJYdQL7xg==\n\
        -----END PUBLIC KEY-----\n";
    const RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC41PKDninKgvCo+l5E3OegXvyb\n\
        GK19rWkoGXOxvdQLUv3YehnO3jkI7HhUpVzEyO1L5Lw9mtTRMmBy9jer+7yq8v51\n\
        NrJsmjh/4LsF7d+gWnspWwUSLVQeWH74qanougiLeRzdctTM6mulaW0kdOP5Whec\n\
        2WIpHvISCYy6BJ36sQIDAQAB\n\
        -----END PUBLIC KEY-----\n";

    fn refused_field(algorithm: &str, material: &str) -> Option<String> {
        match check(algorithm, material) {
            Err(ApiError::InvalidField { field, message }) => {
                assert!(!message.contains(material.trim()), "{message}");
                field
            }
            other => panic!("{algorithm}: expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn good_keys_pass() {
        check("HS256", &"s".repeat(32)).unwrap();
        check("EdDSA", ED25519_PEM).unwrap();
        check("ES256", P256_PEM).unwrap();
    }

    #[test]
    fn bad_keys_are_refused_naming_the_field() {
        let key = Some("key_material".to_owned());
        assert_eq!(refused_field("HS256", &"s".repeat(31)), key);
        assert_eq!(refused_field("RS256", RSA_1024_PEM), key);
        assert_eq!(refused_field("RS256", ED25519_PEM), key);
        assert_eq!(refused_field("ES256", ED25519_PEM), key);
        assert_eq!(refused_field("EdDSA", P256_PEM), key);
        assert_eq!(refused_field("EdDSA", &"x".repeat(40)), key);
        assert_eq!(
            refused_field("none", &"s".repeat(40)),
            Some("algorithm".into())
        );
    }
}
