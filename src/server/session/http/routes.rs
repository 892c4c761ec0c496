//! The HTTP port's route table: the one place that says which paths exist and which methods
//! each takes. A route names what answers it ([`Route`]); the answering is `server::session::http`'s.
//!
//! gRPC-Web takes `POST` (the call) and `OPTIONS` (the browser's CORS preflight) on each of
//! `server::session::grpc_web::PATHS`; `GET /v1/ws` is the WebSocket upgrade (a `101` and the
//! connection's next session, see `server::session`, "Switching sessions"). The web console's
//! pages are `GET /` and `GET /login`, its files `GET /assets/<name>` (`console::assets`).

use crate::server::session::grpc_web::PATHS as GRPC_WEB_PATHS;

/// What answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: `200 OK` or `503 DEGRADED`.
    Healthz,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /v1/status`: the connection registry's JSON; admin only.
    Status,
    /// `POST` on one of the gRPC-Web paths: a call.
    GrpcWeb,
    /// `OPTIONS` on one of the gRPC-Web paths: the CORS preflight (`--cors-origin`).
    GrpcWebPreflight,
    /// `GET /v1/ws`: the WebSocket upgrade.
    WebSocket,
    /// `POST /v1/logs`: OTLP/HTTP logs (`server::session::otlp`).
    OtlpLogs,
    /// `OPTIONS /v1/logs`: the CORS preflight of a page's OpenTelemetry exporter.
    OtlpPreflight,
    /// `GET /`: the console's app page. It shows logs, so it needs a session (see
    /// [`Route::needs_session`]); without one the browser is sent to `/login`.
    ConsolePage,
    /// `GET /login` and `GET /assets/<name>`: the login page and the console's files, which hold
    /// no data and are served to anyone.
    ConsoleFile,
    /// The control panel's JSON API (`server::session::http::console`).
    Api(Api),
    /// A stand-in upgrade for the tests of the session switch: `101`, then plain text lines.
    #[cfg(test)]
    TestUpgrade,
}

/// The console's JSON API routes. Every one but [`Api::Login`] needs a session or the admin
/// token (`console::auth::Auth::check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /api/login`.
    Login,
    /// `POST /api/logout`.
    Logout,
    /// `GET /api/session`: the CSRF token and the time left.
    Session,
    /// `GET /api/connections`: who is connected (as `/v1/status`).
    Connections,
    /// `GET /api/server`: health, throughput, disk use per bucket.
    Server,
    /// `GET /api/tokens`: the token registry.
    Tokens,
    /// `POST /api/tokens`: a new token.
    CreateToken,
    /// `POST /api/tokens/<jti>/revoke` (the jti is taken from the path by the handler).
    RevokeToken,
    /// `GET /api/search`: stored records, newest first, a slice at a time.
    Search,
    /// `GET /api/counts`: counts by level and a histogram, a slice at a time.
    Counts,
    /// `GET /api/context`: the records around one.
    Context,
    /// `GET /api/tail`: the live tail, Server-Sent Events.
    Tail,
    /// Any other path under `/api/`: `404` once the guard let it through.
    Unknown,
}

impl Route {
    /// Whether the route needs an admin token (unless `--admin-open`). Everything but health,
    /// metrics and ingestion may show who is connected.
    pub fn admin(self) -> bool {
        matches!(self, Route::Status)
    }

    /// Whether the route answers only a logged-in browser (or the admin token): the console's
    /// pages that show data. Its API routes (`/api/...`) check the session themselves.
    pub fn needs_session(self) -> bool {
        matches!(self, Route::ConsolePage)
    }
}

/// One row of the table.
struct Entry {
    path: &'static str,
    method: &'static str,
    route: Route,
}

const ROUTES: &[Entry] = &[
    Entry {
        path: "/healthz",
        method: "GET",
        route: Route::Healthz,
    },
    Entry {
        path: "/metrics",
        method: "GET",
        route: Route::Metrics,
    },
    Entry {
        path: "/v1/status",
        method: "GET",
        route: Route::Status,
    },
    Entry {
        path: "/v1/logs",
        method: "POST",
        route: Route::OtlpLogs,
    },
    Entry {
        path: "/v1/logs",
        method: "OPTIONS",
        route: Route::OtlpPreflight,
    },
    Entry {
        path: "/",
        method: "GET",
        route: Route::ConsolePage,
    },
    Entry {
        path: "/login",
        method: "GET",
        route: Route::ConsoleFile,
    },
    Entry {
        path: "/api/login",
        method: "POST",
        route: Route::Api(Api::Login),
    },
    Entry {
        path: "/api/logout",
        method: "POST",
        route: Route::Api(Api::Logout),
    },
    Entry {
        path: "/api/session",
        method: "GET",
        route: Route::Api(Api::Session),
    },
    Entry {
        path: "/api/connections",
        method: "GET",
        route: Route::Api(Api::Connections),
    },
    Entry {
        path: "/api/server",
        method: "GET",
        route: Route::Api(Api::Server),
    },
    Entry {
        path: "/api/tokens",
        method: "GET",
        route: Route::Api(Api::Tokens),
    },
    Entry {
        path: "/api/tokens",
        method: "POST",
        route: Route::Api(Api::CreateToken),
    },
    Entry {
        path: "/api/search",
        method: "GET",
        route: Route::Api(Api::Search),
    },
    Entry {
        path: "/api/counts",
        method: "GET",
        route: Route::Api(Api::Counts),
    },
    Entry {
        path: "/api/context",
        method: "GET",
        route: Route::Api(Api::Context),
    },
    Entry {
        path: "/api/tail",
        method: "GET",
        route: Route::Api(Api::Tail),
    },
    #[cfg(test)]
    Entry {
        path: "/test/upgrade",
        method: "GET",
        route: Route::TestUpgrade,
    },
];

/// The gRPC-Web methods, whichever of [`GRPC_WEB_PATHS`] the path is.
fn grpc_web(path: &str, method: &str) -> Option<Route> {
    if !GRPC_WEB_PATHS.contains(&path) {
        return None;
    }
    match method {
        "POST" => Some(Route::GrpcWeb),
        "OPTIONS" => Some(Route::GrpcWebPreflight),
        _ => None,
    }
}

const WEBSOCKET_PATH: &str = "/v1/ws";

/// The console's files: every path under it is [`Route::ConsoleFile`] (`console::assets::get`
/// answers `404` for a name it does not hold).
const ASSETS_PREFIX: &str = crate::server::session::http::console::assets::ASSETS_PREFIX;

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No such path: `404`.
    NotFound,
    /// The path exists, not with this method: `405` with `Allow` listing these.
    Method { allow: String },
}

/// The route for `method` on `path`.
///
/// # Errors
/// [`Miss`]: no such path, or not with this method.
pub fn find(method: &str, path: &str) -> Result<Route, Miss> {
    if GRPC_WEB_PATHS.contains(&path) {
        return grpc_web(path, method).ok_or_else(|| Miss::Method {
            allow: "POST, OPTIONS".into(),
        });
    }
    if path == WEBSOCKET_PATH {
        return if method == "GET" {
            Ok(Route::WebSocket)
        } else {
            Err(Miss::Method {
                allow: "GET".into(),
            })
        };
    }
    if path.starts_with(ASSETS_PREFIX) {
        return if method == "GET" {
            Ok(Route::ConsoleFile)
        } else {
            Err(Miss::Method {
                allow: "GET".into(),
            })
        };
    }
    if revoke_jti(path).is_some() {
        return if method == "POST" {
            Ok(Route::Api(Api::RevokeToken))
        } else {
            Err(Miss::Method {
                allow: "POST".into(),
            })
        };
    }
    let mut allow: Vec<&str> = Vec::new();
    for entry in ROUTES.iter().filter(|e| e.path == path) {
        if entry.method == method {
            return Ok(entry.route);
        }
        allow.push(entry.method);
    }
    if allow.is_empty() && path.starts_with("/api/") {
        // Answered 401 without a session, 404 with one: the API's shape is not shown to
        // strangers.
        Ok(Route::Api(Api::Unknown))
    } else if allow.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Method {
            allow: allow.join(", "),
        })
    }
}

/// The `<jti>` of `/api/tokens/<jti>/revoke`.
pub fn revoke_jti(path: &str) -> Option<&str> {
    path.strip_prefix("/api/tokens/")?
        .strip_suffix("/revoke")
        .filter(|jti| !jti.is_empty() && !jti.contains('/'))
}

/// The paths that exist, for the `404` line.
pub fn paths() -> String {
    let mut paths: Vec<&str> = ROUTES
        .iter()
        .map(|e| e.path)
        .filter(|p| !p.starts_with("/test/") && !p.starts_with("/api/"))
        .collect();
    paths.dedup();
    paths.push(WEBSOCKET_PATH);
    paths.push("/assets/...");
    paths.extend(GRPC_WEB_PATHS);
    paths.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_methods_and_misses() {
        assert_eq!(find("GET", "/healthz"), Ok(Route::Healthz));
        assert_eq!(find("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(find("GET", "/v1/status"), Ok(Route::Status));
        assert_eq!(find("GET", "/nope"), Err(Miss::NotFound));
        assert_eq!(
            find("POST", "/healthz"),
            Err(Miss::Method {
                allow: "GET".into()
            })
        );
        assert!(Route::Status.admin() && !Route::Healthz.admin() && !Route::Metrics.admin());
        assert_eq!(find("GET", "/v1/ws"), Ok(Route::WebSocket));
        assert_eq!(
            find("POST", "/v1/ws"),
            Err(Miss::Method {
                allow: "GET".into()
            })
        );
        for path in GRPC_WEB_PATHS {
            assert_eq!(find("POST", path), Ok(Route::GrpcWeb));
            assert_eq!(find("OPTIONS", path), Ok(Route::GrpcWebPreflight));
            assert_eq!(
                find("GET", path),
                Err(Miss::Method {
                    allow: "POST, OPTIONS".into()
                })
            );
            assert!(!Route::GrpcWeb.admin());
        }
        assert_eq!(find("POST", "/v1/logs"), Ok(Route::OtlpLogs));
        assert_eq!(find("OPTIONS", "/v1/logs"), Ok(Route::OtlpPreflight));
        assert_eq!(
            find("GET", "/v1/logs"),
            Err(Miss::Method {
                allow: "POST, OPTIONS".into()
            })
        );
        assert!(!Route::OtlpLogs.admin());
        assert_eq!(find("POST", "/api/login"), Ok(Route::Api(Api::Login)));
        assert_eq!(find("GET", "/api/tokens"), Ok(Route::Api(Api::Tokens)));
        assert_eq!(
            find("POST", "/api/tokens"),
            Ok(Route::Api(Api::CreateToken))
        );
        assert_eq!(
            find("POST", "/api/tokens/abc_-1/revoke"),
            Ok(Route::Api(Api::RevokeToken))
        );
        assert_eq!(revoke_jti("/api/tokens/abc_-1/revoke"), Some("abc_-1"));
        assert_eq!(revoke_jti("/api/tokens//revoke"), None);
        assert_eq!(revoke_jti("/api/tokens/a/b/revoke"), None);
        assert_eq!(find("GET", "/api/nope"), Ok(Route::Api(Api::Unknown)));
        assert_eq!(
            find("GET", "/api/login"),
            Err(Miss::Method {
                allow: "POST".into()
            })
        );
        assert!(paths().starts_with(
            "/healthz, /metrics, /v1/status, /v1/logs, /, /login, /v1/ws, /assets/..., /logmill.v1."
        ));
        assert_eq!(find("GET", "/"), Ok(Route::ConsolePage));
        assert_eq!(find("GET", "/login"), Ok(Route::ConsoleFile));
        assert_eq!(find("GET", "/assets/app.js"), Ok(Route::ConsoleFile));
        assert_eq!(find("GET", "/assets/nope.js"), Ok(Route::ConsoleFile));
        assert_eq!(
            find("POST", "/assets/app.js"),
            Err(Miss::Method {
                allow: "GET".into()
            })
        );
        assert!(Route::ConsolePage.needs_session() && !Route::ConsoleFile.needs_session());
        assert!(!Route::ConsolePage.admin() && !Route::ConsoleFile.admin());
    }
}
