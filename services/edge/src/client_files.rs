//! The browser client's static files (`services/edge/client/`), compiled
//! into the binary so that an edge serves its client with nothing beside it
//! on disk: `GET /` is `index.html`, `GET /client/<file>` the rest.
//!
//! The client is plain JavaScript modules with no build step; every file
//! it needs is in [`FILES`], and nothing is fetched from another site.

use warp::Filter;
use warp::http::HeaderValue;
use warp::reply::Response;

/// One embedded file: its name under `/client/`, its content type, its bytes.
#[derive(Debug)]
pub struct ClientFile {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! client_file {
    ($name:literal, $content_type:expr) => {
        ClientFile {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../client/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the client. A new file needs a line here.
pub static FILES: &[ClientFile] = &[
    client_file!("index.html", "text/html; charset=utf-8"),
    client_file!("app.css", "text/css; charset=utf-8"),
    client_file!("app.js", JS),
    client_file!("api.js", JS),
    client_file!("chat.js", JS),
    client_file!("live.js", JS),
    client_file!("sse.js", JS),
];

/// The page may load scripts, styles and data only from its own origin
/// (`'self'` covers same-origin `ws:` too); no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The embedded file called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static ClientFile> {
    FILES.iter().find(|f| f.name == name)
}

/// `GET /` and `GET /client/<file>`; other names fall through to the
/// service's 404.
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let index = warp::path::end()
        .and(warp::get())
        .map(|| "index.html".to_owned());
    let file = warp::path!("client" / String).and(warp::get());
    index.or(file).unify().and_then(|name: String| async move {
        find(&name).map(serve).ok_or_else(warp::reject::not_found)
    })
}

fn serve(file: &'static ClientFile) -> Response {
    let mut response = Response::new(file.bytes.into());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(file.content_type));
    // Small files, and a new edge may serve a new client: always revalidate.
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_root_is_the_page_and_files_have_their_type() {
        let page = warp::test::request().path("/").reply(&routes()).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(String::from_utf8_lossy(page.body()).contains("<html"));

        let script = warp::test::request()
            .path("/client/app.js")
            .reply(&routes())
            .await;
        assert_eq!(script.status(), 200);
        assert_eq!(script.headers()["content-type"], JS);
        assert_eq!(script.headers()["x-content-type-options"], "nosniff");

        let css = warp::test::request()
            .path("/client/app.css")
            .reply(&routes())
            .await;
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    }

    #[tokio::test]
    async fn unknown_files_and_other_methods_are_not_served() {
        for path in ["/client/nope.js", "/client/../Cargo.toml", "/client/"] {
            let reply = warp::test::request().path(path).reply(&routes()).await;
            assert_eq!(reply.status(), 404, "{path}");
        }
        let post = warp::test::request()
            .method("POST")
            .path("/")
            .reply(&routes())
            .await;
        assert_ne!(post.status(), 200);
    }

    /// Every module the page imports is embedded: a file added to
    /// `client/` but not to [`FILES`] would be a 404 in the browser.
    #[test]
    fn every_imported_module_is_embedded() {
        for file in FILES.iter().filter(|f| f.name.ends_with(".js")) {
            let text = std::str::from_utf8(file.bytes).expect("UTF-8");
            for import in text.split("from \"./").skip(1) {
                let name = import.split('"').next().unwrap_or_default();
                assert!(find(name).is_some(), "{} imports {name}", file.name);
            }
        }
        let page = std::str::from_utf8(find("index.html").expect("page").bytes).expect("UTF-8");
        for link in page.split("\"/client/").skip(1) {
            let name = link.split('"').next().unwrap_or_default();
            assert!(find(name).is_some(), "index.html links {name}");
        }
    }
}
