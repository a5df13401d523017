//! The secrets `dev`, `cluster`, the test harness and `order-service secrets` (for
//! compose) make and keep in a folder: Restate's request identity key pair (restate-server signs
//! every request to the service's endpoint with the private key, the endpoint checks
//! it with the public key) and the API's caller key (`ORDER_INTERNAL_KEY`).

use crate::caller::CallerKey;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The PKCS#8 DER of an Ed25519 private key is this prefix and the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Restate's request identity: the private key file restate-server signs with, and
/// the public key (`publickeyv1_...`) the endpoint accepts.
#[derive(Debug, Clone)]
pub struct RequestIdentity {
    pub private_key_file: PathBuf,
    pub public_key: String,
}

/// Everything a local stack's service and engine share.
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    pub identity: RequestIdentity,
    pub internal_key: CallerKey,
    /// `ORDER_INTERNAL_KEY`'s value.
    pub internal_key_text: String,
}

impl LocalSecrets {
    /// The secrets kept in `dir`, made there the first time.
    pub fn in_dir(dir: &Path) -> anyhow::Result<LocalSecrets> {
        let identity = RequestIdentity::in_dir(dir)?;
        let file = dir.join("internal-key");
        let internal_key_text = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().to_owned(),
            Err(_) => {
                let (_, text) = CallerKey::generate()?;
                write_private(&file, text.as_bytes())?;
                text
            }
        };
        let internal_key = CallerKey::new(internal_key_text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        Ok(LocalSecrets {
            identity,
            internal_key,
            internal_key_text,
        })
    }

    /// Writes beside them what a deployment reads as plain files: the public key
    /// (`request-identity.pub`) and a secret for the API's tokens (`jwt-secret`,
    /// made once), for `compose.yaml`'s services to take.
    pub fn write_deployment_files(&self, dir: &Path) -> anyhow::Result<()> {
        let public = dir.join("request-identity.pub");
        if !public.exists() {
            write_private(&public, self.identity.public_key.as_bytes())?;
        }
        let jwt = dir.join("jwt-secret");
        if !jwt.exists() {
            let (_, text) = CallerKey::generate()?;
            write_private(&jwt, text.as_bytes())?;
        }
        Ok(())
    }

    /// The service's environment that carries them.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "ORDER_RESTATE_IDENTITY_KEYS".into(),
                self.identity.public_key.clone(),
            ),
            ("ORDER_INTERNAL_KEY".into(), self.internal_key_text.clone()),
        ]
    }
}

impl RequestIdentity {
    /// The key pair kept in `dir/request-identity.pem`, made there the first time.
    pub fn in_dir(dir: &Path) -> anyhow::Result<RequestIdentity> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join("request-identity.pem");
        let seed = match std::fs::read_to_string(&file) {
            Ok(text) => seed_of(&text).with_context(|| format!("{}", file.display()))?,
            Err(_) => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed)
                    .map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
                let mut der = PKCS8_ED25519_PREFIX.to_vec();
                der.extend_from_slice(&seed);
                let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
                write_private(&file, text.as_bytes())?;
                seed
            }
        };
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        Ok(RequestIdentity {
            private_key_file: std::path::absolute(&file)?,
            public_key: format!(
                "publickeyv1_{}",
                bs58::encode(public.as_bytes()).into_string()
            ),
        })
    }
}

/// The seed of a PEM PKCS#8 Ed25519 private key.
fn seed_of(text: &str) -> anyhow::Result<[u8; 32]> {
    let pem = pem::parse(text)?;
    let der = pem.contents();
    anyhow::ensure!(
        pem.tag() == "PRIVATE KEY" && der.len() == 48 && der[..16] == PKCS8_ED25519_PREFIX,
        "not an Ed25519 private key in PKCS#8 PEM"
    );
    Ok(der[16..].try_into()?)
}

/// Writes `bytes` to a new file only its owner can read.
fn write_private(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pair_is_made_once_and_read_back_the_same() {
        let dir = std::env::temp_dir().join(format!("secrets-{}", uuid::Uuid::new_v4()));
        let made = LocalSecrets::in_dir(&dir).unwrap();
        let again = LocalSecrets::in_dir(&dir).unwrap();
        assert_eq!(made.identity.public_key, again.identity.public_key);
        assert_eq!(made.internal_key_text, again.internal_key_text);
        // The form the SDK's endpoint accepts.
        restate_sdk::endpoint::Endpoint::builder()
            .identity_key(&made.identity.public_key)
            .unwrap();
        let mode = std::fs::metadata(&made.identity.private_key_file)
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
