//! The console's files, embedded in the binary: `GET /` (the app page), `GET /login` and
//! `GET /assets/<name>` (ES modules, the stylesheet, the icon), from `console/assets/`.
//!
//! Plain HTML, CSS and JavaScript modules, no build step: what is in `assets/` is what the
//! browser runs (`assets/app.js` says how the pages are put together). Nothing is read from
//! disk at run time and nothing comes from another origin, so the console works on a closed
//! network and a request path can never name a file outside the table below.
//!
//! Every answer carries a strict `Content-Security-Policy` ([`CONTENT_SECURITY_POLICY`]): scripts,
//! styles, images and requests from this origin only, no inline script or style, no framing.
//! The pages are written for it (no `<script>` without `src`, no `style=` or `on...=` attribute;
//! the tests below check), so a value from a log record that slipped into the page as markup
//! still could not run.
//!
//! What it does not do: check the session. A request for `/` without one is sent to `/login`
//! by the caller (`web.rs`, [`Route::ConsolePage`](super::super::routes::Route)); the login
//! page and the assets are public, as they hold no data.

/// The policy of every console answer: this origin only, no inline code, no framing.
/// `img-src data:` is not needed and not allowed; the SVG icon is a file.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Why `no-cache` (the browser asks again each time, and gets the file again): the names carry
/// no version, so a cached copy could outlive an upgrade of the server and load old modules
/// against a new API. The files are small (about 50 KiB in all).
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

impl Asset {
    /// The headers of its `200`: type, caching, the policy, and the usual hardening (no MIME
    /// sniffing, no referrer sent with the page's links).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Content-Type", self.content_type.into()),
            ("Cache-Control", CACHE_CONTROL.into()),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY.into()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("X-Frame-Options", "DENY".into()),
            ("Referrer-Policy", "no-referrer".into()),
        ]
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The pages, by request path.
const PAGES: &[(&str, Asset)] = &[
    (
        "/",
        Asset {
            content_type: HTML,
            body: include_bytes!("assets/index.html"),
        },
    ),
    (
        "/login",
        Asset {
            content_type: HTML,
            body: include_bytes!("assets/login.html"),
        },
    ),
];

/// The files under `/assets/`, by name.
const FILES: &[(&str, Asset)] = &[
    ("app.js", js(include_bytes!("assets/app.js"))),
    ("api.js", js(include_bytes!("assets/api.js"))),
    ("dom.js", js(include_bytes!("assets/dom.js"))),
    ("login.js", js(include_bytes!("assets/login.js"))),
    (
        "connections.js",
        js(include_bytes!("assets/connections.js")),
    ),
    ("tokens.js", js(include_bytes!("assets/tokens.js"))),
    ("explore.js", js(include_bytes!("assets/explore.js"))),
    ("server.js", js(include_bytes!("assets/server.js"))),
    (
        "style.css",
        Asset {
            content_type: CSS,
            body: include_bytes!("assets/style.css"),
        },
    ),
    (
        "icon.svg",
        Asset {
            content_type: SVG,
            body: include_bytes!("assets/icon.svg"),
        },
    ),
];

const fn js(body: &'static [u8]) -> Asset {
    Asset {
        content_type: JS,
        body,
    }
}

/// Where the files live in the URL space.
pub const ASSETS_PREFIX: &str = "/assets/";

/// The file a `GET` of `path` (without its query) answers: `/`, `/login`, or `/assets/<name>`
/// for a name in the table; anything else is `None` (a `404`). The name is compared whole, so
/// `..`, `%2e` and the like simply match nothing.
pub fn get(path: &str) -> Option<Asset> {
    if let Some(name) = path.strip_prefix(ASSETS_PREFIX) {
        return FILES.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    }
    PAGES.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("the console's files are UTF-8")
    }

    /// Every `"/assets/x"` a text names, and every `'./x.js'` module it imports.
    fn references(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for quote in ['"', '\'', '`'] {
            for start in [format!("{quote}{ASSETS_PREFIX}"), format!("{quote}./")] {
                for (at, _) in text.match_indices(&start) {
                    let rest = &text[at + start.len()..];
                    let name = rest.split(quote).next().unwrap_or("");
                    found.push(name.to_owned());
                }
            }
        }
        found
    }

    #[test]
    fn pages_and_files_are_found_and_nothing_else() {
        assert_eq!(get("/").unwrap().content_type, HTML);
        assert_eq!(get("/login").unwrap().content_type, HTML);
        assert_eq!(get("/assets/app.js").unwrap().content_type, JS);
        assert_eq!(get("/assets/style.css").unwrap().content_type, CSS);
        assert_eq!(get("/assets/icon.svg").unwrap().content_type, SVG);
        for path in [
            "/assets/",
            "/assets",
            "/assets/../Cargo.toml",
            "/assets/%2e%2e/Cargo.toml",
            "/assets/app.js/",
            "/assets//app.js",
            "/index.html",
            "/assets/index.html",
            "/login/",
            "",
        ] {
            assert_eq!(get(path), None, "{path}");
        }
    }

    #[test]
    fn every_reference_is_embedded() {
        for (name, asset) in PAGES.iter().chain(FILES) {
            for reference in references(text(*asset)) {
                let path = format!("{ASSETS_PREFIX}{reference}");
                assert!(get(&path).is_some(), "{name} names {path}, not embedded");
            }
        }
        // And every file is used by something.
        for (name, _) in FILES {
            let used = PAGES
                .iter()
                .chain(FILES)
                .any(|(_, a)| references(text(*a)).iter().any(|r| r == name));
            assert!(used, "{name} is embedded but nothing loads it");
        }
    }

    /// What the policy forbids is not in the pages: inline scripts, inline styles, inline
    /// handlers, other origins.
    #[test]
    fn the_pages_obey_the_policy() {
        for (name, asset) in PAGES {
            let html = text(*asset);
            for tag in html.split("<script").skip(1) {
                let head = tag.split('>').next().unwrap();
                assert!(
                    head.contains("src=\"/assets/"),
                    "{name}: inline <script{head}>"
                );
                assert!(
                    tag[head.len() + 1..].starts_with("</script>"),
                    "{name}: inline script"
                );
            }
            assert!(!html.contains("<style"), "{name}: <style>");
            assert!(!html.contains(" style="), "{name}: style attribute");
            let handler = html.match_indices(" on").any(|(at, _)| {
                let rest = &html[at + 3..];
                let name_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
                name_len > 0 && rest[name_len..].starts_with('=')
            });
            assert!(!handler, "{name}: an on...= attribute");
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{name}"
            );
        }
        for (name, asset) in FILES {
            let body = text(*asset);
            // The only absolute URL a file may hold is the SVG namespace.
            let outside = ["http://", "https://"]
                .iter()
                .flat_map(|scheme| body.match_indices(scheme))
                .filter(|(at, _)| !body[*at..].starts_with("http://www.w3.org/2000/svg"))
                .count();
            assert_eq!(outside, 0, "{name} names another origin");
            assert!(!body.contains("innerHTML"), "{name}: markup from strings");
            assert!(!body.contains("eval("), "{name}: eval");
        }
        for needle in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(needle));
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
