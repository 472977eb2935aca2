//! Names that reach Git or GitHub: branch names, GitHub repository names and
//! secrets sent as HTTP header values. Each check runs where input enters
//! (the API) and again in the sources, before a name becomes a git
//! argument or part of a URL, so that `-rf` never reaches git as an option
//! and `acme/..` never reaches GitHub as a path.

/// Longest branch name accepted, in bytes (Git has no limit, but file
/// systems, ref storage and URLs do).
pub const MAX_BRANCH_BYTES: usize = 255;

/// A branch name as `git check-ref-format --branch` accepts it, minus the
/// `@{…}` shorthands that command expands (`@{-1}`, `main@{0}`) and the
/// single `@`: a branch here is a name, never an expression.
///
/// The `Err` says what is wrong and what to do.
pub fn check_branch_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{}` is not a valid branch name: {why}; give the name of a branch as \
             `git branch --list` shows it",
            name.escape_debug()
        ))
    };
    if name.is_empty() {
        return Err("the branch name is empty; give the name of a branch, e.g. `main`".into());
    }
    if name.len() > MAX_BRANCH_BYTES {
        return Err(format!(
            "the branch name is {} bytes; at most {MAX_BRANCH_BYTES} are accepted",
            name.len()
        ));
    }
    if name.starts_with('-') {
        return bad("it starts with `-`");
    }
    if name == "@" {
        return bad("`@` alone means HEAD");
    }
    if name == "HEAD" {
        return bad("`HEAD` is not a branch");
    }
    if name.contains("@{") {
        return bad("it contains `@{` (a reflog or previous-branch expression)");
    }
    if name.contains("..") {
        return bad("it contains `..`");
    }
    if let Some(c) = name.chars().find(|c| c.is_ascii_control()) {
        return bad(&format!(
            "it contains the control character {:?}",
            c.escape_debug().to_string()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return bad(&format!("it contains `{c}`"));
    }
    if name.starts_with('/') || name.ends_with('/') {
        return bad("it starts or ends with `/`");
    }
    if name.contains("//") {
        return bad("it contains `//`");
    }
    if name.ends_with('.') {
        return bad("it ends with `.`");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return bad(&format!("its part `{component}` starts with `.`"));
        }
        if component.ends_with(".lock") {
            return bad(&format!("its part `{component}` ends with `.lock`"));
        }
    }
    Ok(())
}

/// A GitHub repository as `owner/name`, by GitHub's rules: the owner is 1
/// to 39 letters, digits or `-`, not starting or ending with `-`; the name
/// is 1 to 100 letters, digits, `.`, `_` or `-`, and not `.` or `..`.
/// Returns the owner and the name.
pub fn check_github_repository(full_name: &str) -> Result<(&str, &str), String> {
    let bad = |why: String| {
        Err(format!(
            "`{}` is not a GitHub repository: {why}; write it as owner/name, e.g. \
             `rust-lang/cargo`",
            full_name.escape_debug()
        ))
    };
    let Some((owner, name)) = full_name.split_once('/') else {
        return bad("there is no `/` between owner and name".into());
    };
    if owner.is_empty() || owner.len() > 39 {
        return bad(format!(
            "the owner must be 1 to 39 characters, not {}",
            owner.len()
        ));
    }
    if !owner
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return bad("the owner may hold only letters, digits and `-`".into());
    }
    if owner.starts_with('-') || owner.ends_with('-') {
        return bad("the owner must not start or end with `-`".into());
    }
    if name.is_empty() || name.len() > 100 {
        return bad(format!(
            "the name must be 1 to 100 characters, not {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("the name may hold only letters, digits, `.`, `_` and `-`".into());
    }
    if name == "." || name == ".." {
        return bad(format!("`{name}` is not a repository name"));
    }
    Ok((owner, name))
}

/// A secret (a token, an API key) that is sent as an HTTP header value:
/// surrounding whitespace is dropped (a token file usually ends with a
/// newline), and what is left must be visible ASCII without spaces. The
/// `Err` describes the problem without the secret; `what` names it
/// ("the GitHub token named by `env:GH_TOKEN`").
pub fn clean_header_secret<'a>(raw: &'a str, what: &str) -> Result<&'a str, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        let kind = match c {
            '\n' | '\r' => "a line break".to_string(),
            ' ' | '\t' => "a space or tab".to_string(),
            c if c.is_control() => "a control character".to_string(),
            _ => "a character that is not ASCII".to_string(),
        };
        return Err(format!(
            "{what} holds {kind} at byte {at}, which cannot be sent in an HTTP header; \
             store the secret alone, on one line"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What git itself says: `git check-ref-format --branch NAME`, run
    /// outside any repository so that `@{-1}` expands to nothing.
    fn git_accepts_branch(name: &str) -> bool {
        std::process::Command::new("git")
            .args(["check-ref-format", "--branch", name])
            .current_dir(std::env::temp_dir())
            .env_remove("GIT_DIR")
            .env("GIT_CEILING_DIRECTORIES", std::env::temp_dir())
            .output()
            .expect("git is installed")
            .status
            .success()
    }

    #[test]
    fn branch_names_follow_git_check_ref_format() {
        let names = [
            "main",
            "feature/x",
            "release-1.2",
            "a.b",
            "a-",
            "a@b",
            "@a",
            "a@",
            "a{b",
            "a.lockx",
            "refs/heads/x",
            "x/HEAD",
            "ünïcödé",
            "",
            "-rf",
            "-",
            "--upload-pack=evil",
            "main@{0}",
            "@{-1}",
            "a@{b",
            "HEAD",
            "a..b",
            "..",
            "a b",
            "a\tb",
            "a\nb",
            "a\x7fb",
            "a\x01b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            ".a",
            "a/.b",
            "a.lock",
            "a.lock/b",
            "a/b.lock",
            "a/",
            "/a",
            "a//b",
            "a.",
            "a/b.",
        ];
        for name in names {
            assert_eq!(
                check_branch_name(name).is_ok(),
                git_accepts_branch(name),
                "{name:?}: ours {:?}",
                check_branch_name(name)
            );
        }
        // Stricter than git: `@` is HEAD's shorthand there, never a branch here.
        assert!(check_branch_name("@").is_err());
        let long = "a".repeat(MAX_BRANCH_BYTES + 1);
        assert!(git_accepts_branch(&long));
        assert!(check_branch_name(&long)
            .unwrap_err()
            .contains("at most 255"));
        assert!(check_branch_name(&long[1..]).is_ok());
    }

    #[test]
    fn branch_errors_say_what_and_how() {
        let err = check_branch_name("-rf").unwrap_err();
        assert!(
            err.contains("`-rf`") && err.contains("starts with `-`"),
            "{err}"
        );
        let err = check_branch_name("main@{0}").unwrap_err();
        assert!(err.contains("`@{`") && err.contains("git branch"), "{err}");
        let err = check_branch_name("a\nb").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn github_repository_names_follow_github_rules() {
        for ok in [
            "acme/widgets",
            "a/b",
            "rust-lang/cargo",
            "acme/widgets.rs",
            "acme/.github",
            "acme/_x-y.z",
            "a1-b2/...x",
        ] {
            assert!(check_github_repository(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_github_repository("acme/widgets").unwrap(),
            ("acme", "widgets")
        );
        let owner39 = format!("{}/x", "a".repeat(39));
        assert!(check_github_repository(&owner39).is_ok());
        let name100 = format!("a/{}", "x".repeat(100));
        assert!(check_github_repository(&name100).is_ok());
        for bad in [
            "",
            "acme",
            "/widgets",
            "acme/",
            "acme/..",
            "acme/.",
            "../widgets",
            "-acme/widgets",
            "acme-/widgets",
            "ac_me/widgets",
            "ac.me/widgets",
            "acme/wid gets",
            "acme/widgets/extra",
            "acme/wid%2e",
            "acme/wïdgets",
            "acme/a?b",
            &format!("{}/x", "a".repeat(40)),
            &format!("a/{}", "x".repeat(101)),
        ] {
            let err = check_github_repository(bad).unwrap_err();
            assert!(err.contains("owner/name"), "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_are_trimmed_and_checked_without_being_echoed() {
        assert_eq!(clean_header_secret("ghp_abc\n", "token"), Ok("ghp_abc"));
        assert_eq!(
            clean_header_secret("  ghp_abc \r\n", "token"),
            Ok("ghp_abc")
        );
        for (raw, kind) in [
            ("abc\ndef", "line break"),
            ("abc\rdef", "line break"),
            ("abc def", "space"),
            ("abc\u{1}def", "control character"),
            ("abc\u{7f}def", "control character"),
            ("abcédef", "not ASCII"),
        ] {
            let err = clean_header_secret(raw, "the token").unwrap_err();
            assert!(err.contains(kind) && err.contains("the token"), "{err}");
            assert!(!err.contains("abc") && !err.contains("def"), "{err}");
        }
        assert!(clean_header_secret(" \n", "the token")
            .unwrap_err()
            .contains("empty"));
    }
}
