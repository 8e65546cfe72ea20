//! Who may use the operators' API, and from where.
//!
//! Reading (GET of `/status`, `/v1/operator/status`, `/metrics`,
//! `/v1/operator/actions`): the read token as `Authorization: Bearer` or as
//! the HTTP Basic password (browsers, Prometheus), or the action token as
//! Bearer.
//!
//! Ordering and cancelling (POST, DELETE on `/v1/operator/actions`), after
//! OWASP's CSRF rules: a browser that once opened `/status` sends its Basic
//! credentials with any request a foreign page makes it send, so
//! - only `Authorization: Bearer <action token>` is accepted, a credential
//!   no browser sends by itself (Basic: 401; the read token: 403);
//! - a cross-site request is refused (403): an `Origin` other than this
//!   collector's own (`https://` + the `Host` header), or
//!   `Sec-Fetch-Site: cross-site` or `same-site`. Without them (curl,
//!   `vsensor action`) the request goes on;
//! - a POST body must be `Content-Type: application/json`, which an HTML
//!   form cannot send (else 415).

use crate::http::header::{HeaderMap, HeaderName, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use crate::http::{refusal, Refusal};
use crate::http::{Method, StatusCode};
use crate::operator_file::Tokens;

/// What the `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    Missing,
    Bearer(Vec<u8>),
    /// The password of HTTP Basic (the user name is ignored).
    Basic(Vec<u8>),
    /// Another scheme or a malformed value; the reason for the client.
    Unusable(String),
}

/// Parses one `Authorization` value: `SCHEME SP credentials`, the scheme
/// case-insensitive (RFC 9110 §11.1).
pub(crate) fn parse_authorization(value: &[u8]) -> Credential {
    let Ok(text) = std::str::from_utf8(value) else {
        return Credential::Unusable("the Authorization header is not text".into());
    };
    let text = text.trim_matches(' ');
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim_matches(' ');
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest.contains(' ') {
            return Credential::Unusable("Authorization: Bearer needs exactly one token".into());
        }
        return Credential::Bearer(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return match base64_decode(rest) {
            Some(d) => match d.iter().position(|c| *c == b':') {
                Some(i) => Credential::Basic(d[i + 1..].to_vec()),
                None => Credential::Unusable("Authorization: Basic without a user:password pair".into()),
            },
            None => Credential::Unusable("Authorization: Basic is not base64".into()),
        };
    }
    Credential::Unusable(format!("authorization scheme {:?} is not accepted (Bearer, or Basic for reading)", shorten(scheme)))
}

/// The request's credential; two `Authorization` headers are refused
/// rather than picking one.
pub(crate) fn credential(headers: &HeaderMap) -> Credential {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    match (all.next(), all.next()) {
        (None, _) => Credential::Missing,
        (Some(v), None) => parse_authorization(v.as_bytes()),
        (Some(_), Some(_)) => Credential::Unusable("more than one Authorization header".into()),
    }
}

/// Standard base64 (RFC 4648, padding optional); None if malformed.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for group in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

/// Constant-time comparison, so a token cannot be guessed byte by byte.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which token a presented value is (both compared, always).
fn which(t: &[u8], tokens: &Tokens) -> (bool, bool) {
    let read = same(t, tokens.read.as_bytes());
    let action = same(t, tokens.action.as_bytes());
    (read, action)
}

fn unauthorized(reason: impl Into<String>) -> Refusal {
    Refusal { status: StatusCode::UNAUTHORIZED, kind: "operator_auth", reason: reason.into(), audit: true }
}

const WRONG_TOKEN: &str = "wrong operator token";

/// May this request read (the status page, JSON status, metrics, the list
/// of actions)?
pub(crate) fn may_read(tokens: &Tokens, headers: &HeaderMap) -> Result<(), Refusal> {
    match credential(headers) {
        Credential::Missing => Err(unauthorized("missing the operators' token (Authorization: Bearer TOKEN, or Basic with the read token as password)")),
        Credential::Unusable(why) => Err(unauthorized(why)),
        Credential::Bearer(t) => match which(&t, tokens) {
            (true, _) | (_, true) => Ok(()),
            _ => Err(unauthorized(WRONG_TOKEN)),
        },
        Credential::Basic(t) => match which(&t, tokens) {
            (true, _) => Ok(()),
            // Kept out of browsers: it could order actions.
            (_, true) => Err(unauthorized("the action token is accepted only as Authorization: Bearer")),
            _ => Err(unauthorized(WRONG_TOKEN)),
        },
    }
}

/// May this request order or cancel actions? Credential first (401, 403),
/// then the cross-site rules (403), then, for a POST, the body's type
/// (415).
pub(crate) fn may_act(tokens: &Tokens, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    match credential(headers) {
        Credential::Missing => return Err(unauthorized("ordering or cancelling actions needs Authorization: Bearer <action token>")),
        Credential::Unusable(why) => return Err(unauthorized(why)),
        Credential::Basic(_) => {
            return Err(unauthorized(
                "HTTP Basic is not accepted for ordering or cancelling actions (browsers send it by themselves): \
                 Authorization: Bearer <action token> is required",
            ))
        }
        Credential::Bearer(t) => match which(&t, tokens) {
            (_, true) => {}
            (true, _) => {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    kind: "operator_auth",
                    reason: "read-only token cannot order actions (vsensor action uses the action token)".into(),
                    audit: true,
                })
            }
            _ => return Err(unauthorized(WRONG_TOKEN)),
        },
    }
    let one = |name| one_header(headers, name);
    if let Some(reason) = cross_site(one(ORIGIN)?, one(HOST)?, one(HeaderName::from_static("sec-fetch-site"))?) {
        return Err(Refusal { status: StatusCode::FORBIDDEN, kind: "operator_cross_site", reason, audit: true });
    }
    if *method == Method::POST {
        let content_type = one_header(headers, CONTENT_TYPE).map_err(|r| Refusal { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, ..r })?;
        json_media_type(content_type).map_err(|reason| refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, "operator_content_type", reason))?;
    }
    Ok(())
}

/// The value of a header that may appear at most once.
fn one_header(headers: &HeaderMap, name: HeaderName) -> Result<Option<&[u8]>, Refusal> {
    let mut all = headers.get_all(&name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v.as_bytes())),
        (Some(_), Some(_)) => Err(refusal(StatusCode::FORBIDDEN, "operator_cross_site", format!("more than one {name} header"))),
    }
}

/// Why a request is cross-site, if it is: an `Origin` that is not
/// `https://` + `Host` (host names compared without regard to case), or
/// `Sec-Fetch-Site: cross-site` / `same-site` (another site, or a sibling
/// subdomain, made the browser send it).
pub(crate) fn cross_site(origin: Option<&[u8]>, host: Option<&[u8]>, fetch_site: Option<&[u8]>) -> Option<String> {
    if let Some(origin) = origin {
        let origin = String::from_utf8_lossy(origin);
        let own = host.map(|h| format!("https://{}", String::from_utf8_lossy(h).trim()));
        match own {
            Some(own) if origin.trim().eq_ignore_ascii_case(&own) => {}
            Some(own) => return Some(format!("cross-origin request refused: Origin {:?} is not this collector's own ({:?})", shorten(&origin), shorten(&own))),
            None => return Some(format!("cross-origin request refused: Origin {:?} but no Host header to compare with", shorten(&origin))),
        }
    }
    if let Some(site) = fetch_site {
        let site = String::from_utf8_lossy(site);
        let site = site.trim();
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Some(format!("cross-site request refused (Sec-Fetch-Site: {})", shorten(site)));
        }
    }
    None
}

/// Is this `Content-Type` JSON? `application/json`, any case, parameters
/// (`; charset=utf-8`) allowed. The error names what was received.
pub(crate) fn json_media_type(value: Option<&[u8]>) -> Result<(), String> {
    let Some(value) = value else {
        return Err("no Content-Type: application/json is required".into());
    };
    let text = String::from_utf8_lossy(value);
    let media = text.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(format!("Content-Type {:?} is not accepted: application/json is required", shorten(&text)))
}

/// At most 80 characters of something a client sent, for a reason.
fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeaderValue;

    fn tokens() -> Tokens {
        Tokens { read: "r".repeat(64), action: "a".repeat(64) }
    }

    fn basic(password: &str) -> String {
        // "op:" + password, base64 by hand (no encoder in the crate).
        let raw = format!("op:{password}").into_bytes();
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in raw.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
            }
        }
        format!("Basic {out}")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn base64_decodes_like_rfc_4648() {
        assert_eq!(base64_decode("b3A6c2VjcmV0").unwrap(), b"op:secret");
        assert_eq!(base64_decode("b3A6c2VjcmV0MQ==").unwrap(), b"op:secret1");
        assert_eq!(base64_decode("b3A6c2VjcmV0MTI=").unwrap(), b"op:secret12");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("b3A6c2V*").is_none());
        assert!(base64_decode("b").is_none());
        assert_eq!(basic("secret"), "Basic b3A6c2VjcmV0");
    }

    #[test]
    fn authorization_schemes() {
        assert_eq!(parse_authorization(b"Bearer abc"), Credential::Bearer(b"abc".to_vec()));
        assert_eq!(parse_authorization(b"bearer   abc "), Credential::Bearer(b"abc".to_vec()));
        assert_eq!(parse_authorization(b"BASIC b3A6c2VjcmV0"), Credential::Basic(b"secret".to_vec()));
        assert_eq!(parse_authorization(basic("a:b").as_bytes()), Credential::Basic(b"a:b".to_vec()), "the password may hold colons");
        for bad in [&b"Bearer"[..], b"Bearer a b", b"Basic !!", b"Basic YWJj", b"Digest x", b"", b"\xff"] {
            assert!(matches!(parse_authorization(bad), Credential::Unusable(_)), "{:?}", String::from_utf8_lossy(bad));
        }
        let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(credential(&two), Credential::Unusable(m) if m.contains("more than one")));
        assert_eq!(credential(&HeaderMap::new()), Credential::Missing);
    }

    #[test]
    fn reading_takes_the_read_token_either_way_and_the_action_token_as_bearer_only() {
        let t = tokens();
        let ok = |h: &[(&'static str, &str)]| may_read(&t, &headers(h));
        assert!(ok(&[("authorization", &format!("Bearer {}", t.read))]).is_ok());
        assert!(ok(&[("authorization", &basic(&t.read))]).is_ok());
        assert!(ok(&[("authorization", &format!("Bearer {}", t.action))]).is_ok());
        for h in [basic(&t.action), format!("Bearer {}", "x".repeat(64)), basic("wrong")] {
            let r = ok(&[("authorization", &h)]).unwrap_err();
            assert_eq!((r.status, r.audit), (StatusCode::UNAUTHORIZED, true), "{h}");
        }
        assert_eq!(ok(&[]).unwrap_err().status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn acting_takes_only_the_action_token_as_bearer() {
        let t = tokens();
        let act = |h: &[(&'static str, &str)]| may_act(&t, &Method::POST, &headers(h));
        let json = ("content-type", "application/json");
        assert!(act(&[("authorization", &format!("Bearer {}", t.action)), json]).is_ok());
        let r = act(&[("authorization", &basic(&t.action)), json]).unwrap_err();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.reason.contains("Bearer"), "{}", r.reason);
        let r = act(&[("authorization", &format!("Bearer {}", t.read)), json]).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.reason.contains("read-only token cannot order actions"), "{}", r.reason);
        assert_eq!(act(&[("authorization", "Bearer nope"), json]).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(act(&[json]).unwrap_err().status, StatusCode::UNAUTHORIZED);
        // DELETE needs no content type; the cross-site rules still hold.
        let del = |h: &[(&'static str, &str)]| may_act(&t, &Method::DELETE, &headers(h));
        let bearer = format!("Bearer {}", t.action);
        assert!(del(&[("authorization", &bearer)]).is_ok());
        assert_eq!(del(&[("authorization", &bearer), ("host", "c:1"), ("origin", "https://evil.example")]).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(act(&[("authorization", &bearer), ("content-type", "text/plain")]).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let two = act(&[("authorization", &bearer), json, ("content-type", "text/plain")]).unwrap_err();
        assert_eq!(two.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", two.reason);
    }

    #[test]
    fn origins() {
        let o = |origin: Option<&str>, host: Option<&str>, site: Option<&str>| {
            cross_site(origin.map(str::as_bytes), host.map(str::as_bytes), site.map(str::as_bytes))
        };
        assert_eq!(o(None, Some("c.example"), None), None, "no Origin: curl, vsensor action");
        assert_eq!(o(Some("https://c.example:8443"), Some("c.example:8443"), None), None);
        assert_eq!(o(Some("https://C.Example"), Some("c.example"), None), None);
        assert_eq!(o(None, None, Some("same-origin")), None);
        assert_eq!(o(None, None, Some("none")), None);
        let refused = [
            o(Some("https://evil.example"), Some("c.example"), None),
            o(Some("http://c.example"), Some("c.example"), None),
            o(Some("https://c.example:444"), Some("c.example:443"), None),
            o(Some("https://c.example.evil"), Some("c.example"), None),
            o(Some("null"), Some("c.example"), None),
            o(Some("https://c.example"), None, None),
            o(None, Some("c.example"), Some("cross-site")),
            o(None, Some("c.example"), Some("Same-Site")),
            o(Some("https://c.example"), Some("c.example"), Some("cross-site")),
        ];
        for (i, r) in refused.iter().enumerate() {
            assert!(r.is_some(), "case {i}");
        }
        assert!(refused[0].as_deref().unwrap().contains("evil.example"));
    }

    #[test]
    fn content_types() {
        let j = |v: &str| json_media_type(Some(v.as_bytes()));
        for ok in ["application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;charset=UTF-8"] {
            assert!(j(ok).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json5",
            "application/jsonx; a=b",
            "",
            "application/json, text/plain",
        ] {
            let e = j(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "names what it got: {e}");
        }
        assert!(json_media_type(None).unwrap_err().contains("no Content-Type"));
    }

    proptest::proptest! {
        #[test]
        fn base64_never_panics(s in "\\PC{0,64}") {
            let _ = base64_decode(&s);
        }

        #[test]
        fn header_parsers_never_panic(a in proptest::collection::vec(proptest::num::u8::ANY, 0..200), b in "\\PC{0,80}", c in "\\PC{0,80}") {
            let _ = parse_authorization(&a);
            let _ = json_media_type(Some(&a));
            let _ = cross_site(Some(&a), Some(b.as_bytes()), Some(c.as_bytes()));
            let _ = cross_site(Some(b.as_bytes()), None, Some(&a));
        }

        /// Only the exact own origin passes, whatever else an attacker writes.
        #[test]
        fn only_the_own_origin_passes(host in "[a-z0-9.:-]{1,30}", origin in "\\PC{0,40}") {
            let own = format!("https://{host}");
            let verdict = cross_site(Some(origin.as_bytes()), Some(host.as_bytes()), None);
            proptest::prop_assert_eq!(verdict.is_none(), origin.trim().eq_ignore_ascii_case(&own));
        }

        /// Whatever follows the media type, only application/json passes.
        #[test]
        fn only_json_passes(media in "[a-zA-Z/+.-]{0,30}", params in "(;[^;]{0,20}){0,3}") {
            let v = format!("{media}{params}");
            proptest::prop_assert_eq!(json_media_type(Some(v.as_bytes())).is_ok(), media.trim().eq_ignore_ascii_case("application/json"));
        }
    }

    #[test]
    fn same_compares_whole_values() {
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
