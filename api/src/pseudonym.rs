//! Participant pseudonyms for exports: HMAC-SHA256 under a random key made
//! once per installation and kept in the data directory
//! (`DATA/pseudonym.key`, mode 0600). The same participant gets the same
//! pseudonym in every export; without the key, nobody can tell which
//! participant it is (ids are small integers, so a plain hash would not do).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::{Error, Result};

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "pseudonym.key";

/// Makes participant pseudonyms.
#[derive(Clone)]
pub struct Pseudonyms {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(<key>)")
    }
}

impl Pseudonyms {
    /// Reads the installation's key, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Pseudonyms> {
        let path = data_dir.join(KEY_FILE);
        let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
        std::fs::create_dir_all(data_dir).map_err(|e| io("creating the folder of", e))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                file.write_all(hex::encode(key).as_bytes())
                    .map_err(|e| io("writing", e))?;
                file.sync_all().map_err(|e| io("syncing", e))?;
                Ok(Pseudonyms { key: Arc::new(key) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).map_err(|e| io("reading", e))?;
                let key = hex::decode(text.trim())
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .ok_or_else(|| Error::Invalid(format!("{} is not a 64-digit hex key", path.display())))?;
                Ok(Pseudonyms { key: Arc::new(key) })
            }
            Err(e) => Err(io("creating", e)),
        }
    }

    /// The pseudonym of a participant: `p_` and 32 hex digits of
    /// HMAC-SHA256(key, "participant:<id>").
    pub fn participant(&self, participant_id: i64) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_slice()).expect("HMAC takes any key length");
        mac.update(format!("participant:{participant_id}").as_bytes());
        format!("p_{}", hex::encode(&mac.finalize().into_bytes()[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_pseudonyms_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pseudonyms::load_or_create(dir.path()).unwrap();
        let b = Pseudonyms::load_or_create(dir.path()).unwrap();
        assert_eq!(a.participant(7), b.participant(7));
        assert_ne!(a.participant(7), a.participant(8));
        assert_eq!(a.participant(7).len(), 34);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            Pseudonyms::load_or_create(other.path()).unwrap().participant(7),
            a.participant(7)
        );
    }
}
