//! Tenants, roles and the names an operator gives: pure rules, checked
//! before anything reaches the ledger.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an API key may do. Each role includes the ones below it.
///
/// - `read`: every `GET`, search and the live progress stream;
/// - `write`: also enqueue syncs, restores and backfills, and cancel them;
/// - `admin`: also create projects (which bind a repository and a
///   credential), retry and discard failed syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!("`{other}` is not a role; use admin, write or read")),
        }
    }
}

/// A tenant name: 1 to 63 of `a-z 0-9 _ -`, starting with a letter or digit.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid tenant name: use 1 to 63 lowercase letters, digits, `_` or `-`, \
             starting with a letter or digit",
            name.escape_debug()
        ))
    }
}

/// A credential name: 1 to 63 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit. It names a registered credential; it is never a
/// reference to an environment variable or a file.
pub fn check_credential_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'.' | b'_' | b'-')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a credential name: name a credential registered by an operator \
             (`projsync credential add NAME --tenant T ...`); names are 1 to 63 letters, \
             digits, `.`, `_` or `-`",
            name.escape_debug()
        ))
    }
}

/// The prefix of every API key, so a leaked key is easy to recognise (and
/// to search for in logs and repositories).
pub const KEY_PREFIX: &str = "psk_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
        for r in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .contains("admin, write or read"));
    }

    #[test]
    fn tenant_and_credential_names() {
        assert!(check_tenant_name("acme-2").is_ok());
        for bad in ["", "-x", "Acme", "a b", "a/b", &"x".repeat(64), "a\0"] {
            assert!(check_tenant_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_credential_name("github.acme_1").is_ok());
        for bad in [
            "",
            "env:GITHUB_TOKEN",
            "file:/etc/hostname",
            "../x",
            ".x",
            "a b",
        ] {
            assert!(check_credential_name(bad).is_err(), "{bad:?}");
        }
    }
}
