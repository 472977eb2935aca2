//! Resource URIs: `projsync://{project}/{path}`. The project is its name
//! (an id is accepted too); both parts are percent-encoded, the path per
//! segment so that its `/` stay readable. `projsync://{project}/` names
//! the whole project (what a subscription to every entry uses).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

pub const SCHEME: &str = "projsync://";

/// What is encoded in a segment: everything but unreserved characters
/// (RFC 3986) and a few sub-delimiters that are safe in a path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The URI of `path` in `project`; `path` empty: the project's root.
pub fn resource_uri(project: &str, path: &str) -> String {
    let path: Vec<String> = path
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!(
        "{SCHEME}{}/{}",
        utf8_percent_encode(project, SEGMENT),
        path.join("/")
    )
}

/// A resource URI's project and path (empty: the project's root).
pub fn parse(uri: &str) -> Result<(String, String), String> {
    let rest = uri.strip_prefix(SCHEME).ok_or_else(|| {
        format!(
            "`{}` is not a projsync resource; URIs are projsync://{{project}}/{{path}}, as \
             resources/list gives them",
            uri.escape_debug()
        )
    })?;
    let (project, path) = rest.split_once('/').unwrap_or((rest, ""));
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| format!("`{}` is not valid percent-encoded UTF-8", s.escape_debug()))
    };
    let project = decode(project)?;
    if project.is_empty() {
        return Err("the resource URI names no project: projsync://{project}/{path}".into());
    }
    let path = path.split('/').map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok((project, path.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_names_and_paths_round_trip() {
        for (project, path) in [
            ("web", "src/lib.rs"),
            ("my project", "dir with space/ü é.txt"),
            ("a/b#c?", "x%y/[z]/#1"),
            ("p", ""),
        ] {
            let uri = resource_uri(project, path);
            assert!(!uri[SCHEME.len()..].contains(' '), "{uri}");
            assert_eq!(parse(&uri).unwrap(), (project.into(), path.into()), "{uri}");
        }
        assert_eq!(
            resource_uri("web", "src/lib.rs"),
            "projsync://web/src/lib.rs"
        );
        assert!(parse("file:///etc/passwd").is_err());
        assert!(parse("projsync:///x").is_err());
        assert!(parse("projsync://p/%ff").is_err());
    }
}
