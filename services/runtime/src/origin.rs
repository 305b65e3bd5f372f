//! Whether a request comes from a page of this site, by its `Origin`: the
//! one rule the edge (WebSocket upgrades, cookie sends) and the api (cookie
//! requests that change something) apply against cross-site requests.

/// Whether `origin` is the site the request reached (`http(s)://` + its
/// `host`) or one of `allowed` (exact, without regard to case).
pub fn is_same_site(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    (authority.is_some() && authority == host)
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::is_same_site;

    #[test]
    fn only_this_host_or_an_allowed_origin_is_the_same_site() {
        let host = Some("chat.example:8080");
        assert!(is_same_site("http://chat.example:8080", host, &[]));
        assert!(is_same_site("https://chat.example:8080", host, &[]));
        assert!(!is_same_site("https://evil.example", host, &[]));
        assert!(!is_same_site("http://chat.example", host, &[]));
        assert!(!is_same_site("null", host, &[]));
        assert!(!is_same_site("http://chat.example:8080", None, &[]));
        let allowed = ["https://App.example".to_owned()];
        assert!(is_same_site("https://app.example", host, &allowed));
    }
}
