//! Identities on disk, for `e2elab keygen` and `e2elab peer`.
//!
//! `DIR/identity.json` holds the whole identity (secret included, mode 0600);
//! `DIR/public.json` holds what a peer may be given.

use e2elab_core::{Identity, IdentityRecord, PublicIdentity};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File with the whole identity.
pub const IDENTITY_FILE: &str = "identity.json";
/// File with the public half.
pub const PUBLIC_FILE: &str = "public.json";

/// Write both files into `dir` (created if needed).
pub fn save(dir: &Path, id: &Identity) -> crate::Result<()> {
    fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir.display().to_string(), e))?;
    let rec = id.to_record();
    let json = serde_json::to_string_pretty(&rec).map_err(crate::Error::msg)?;
    let path = dir.join(IDENTITY_FILE);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .map_err(|e| crate::fail!("{}: {e}", path.display()))?;
    f.write_all(json.as_bytes())
        .map_err(|e| crate::fail!("{}: {e}", path.display()))?;
    let pub_json = serde_json::to_string_pretty(&id.public).map_err(crate::Error::msg)?;
    let ppath = dir.join(PUBLIC_FILE);
    fs::write(&ppath, pub_json).map_err(|e| crate::Error::io(ppath.display().to_string(), e))?;
    Ok(())
}

/// Load the whole identity from `dir` (or from the file itself if a file is given).
pub fn load(dir: &Path) -> crate::Result<Identity> {
    let path = file_in(dir, IDENTITY_FILE);
    let text =
        fs::read_to_string(&path).map_err(|e| crate::Error::io(path.display().to_string(), e))?;
    let rec: IdentityRecord = serde_json::from_str(&text)
        .map_err(|e| crate::Error::data(path.display().to_string(), e))?;
    Identity::from_record(&rec).map_err(|e| crate::fail!("{}: {e}", path.display()))
}

/// Load a public identity from `dir/public.json`, from `dir/identity.json`, or
/// from the file itself.
pub fn load_public(dir: &Path) -> crate::Result<PublicIdentity> {
    let p = file_in(dir, PUBLIC_FILE);
    if p.exists() {
        let text =
            fs::read_to_string(&p).map_err(|e| crate::Error::io(p.display().to_string(), e))?;
        return serde_json::from_str(&text)
            .map_err(|e| crate::Error::data(p.display().to_string(), e));
    }
    load(dir).map(|i| i.public)
}

fn file_in(dir: &Path, name: &str) -> PathBuf {
    if dir.is_dir() {
        dir.join(name)
    } else {
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2elab_core::{Env, Protocol};

    #[test]
    fn save_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("e2elab-store-{}", std::process::id()));
        let mut env = Env::for_party(3, "x");
        let id = e2elab_plaintext::Plaintext
            .generate_identity(&mut env, "a@b")
            .unwrap();
        save(&dir, &id).unwrap();
        let back = load(&dir).unwrap();
        assert_eq!(back.public, id.public);
        assert_eq!(load_public(&dir).unwrap(), id.public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
